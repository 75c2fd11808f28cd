"""``bnnlab reproduce NAME``: run a recipe's table (rows x seeds x steps) at one scale."""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import time
from pathlib import Path
from typing import Any

import typer

from bnnlab.commands._common import command_line, console, handle_errors, parse_sets, print_json

_HELP_SCALE = ("paper: the paper's dataset, model and hyperparameters (needs GPUs and the dataset, "
               "e.g. --data-dir /data/imagenet); mini: a CPU proxy on the bundled digits, minutes on a "
               "laptop, checks the direction of each effect only; smoke: synthetic data, a few batches.")


def _split_rows(rows: str | None) -> list[str] | None:
    if not rows:
        return None
    out = [r.strip() for r in rows.split(",") if r.strip()]
    return out or None


def _check_inputs(plan) -> None:
    """Check data and checkpoint files of every planned step before anything trains."""
    from bnnlab.errors import BnnlabError
    from bnnlab.runner import datamodule_for

    seen: set[str] = set()
    for run in plan:
        for cfg in run.steps:
            d = cfg.data
            key = d.model_dump_json() + str(cfg.seed)
            if key not in seen:
                seen.add(key)
                datamodule_for(cfg)
            specs = [("init.from", cfg.init.from_)]
            specs += [(f"{f}.checkpoint", s.checkpoint) for f, s in (
                ("loss.teacher", cfg.loss.teacher), ("cmim.teacher", cfg.cmim.teacher),
                ("augment.extractor", cfg.augment.extractor)) if s is not None]
            for field, ref in specs:
                if ref and ref != "previous" and not ref.startswith("step:") and not Path(ref).is_file():
                    raise BnnlabError(
                        f"row '{run.row_id}', step '{cfg.name}': {field} {ref} not found; "
                        f"give the file with --set {field}=PATH")


def _plan_rows(recipe, plan) -> list[dict[str, Any]]:
    from bnnlab.config import flatten

    out = []
    for run in plan:
        steps = []
        for cfg in run.steps:
            steps.append({"name": cfg.name, "config": cfg.model_dump(by_alias=True),
                          "flat": {k: v for k, v in flatten(cfg.model_dump(by_alias=True)).items()}})
        out.append({"index": run.index, "row": run.row_id, "label": run.row_label, "seed": run.seed,
                    "paper": run.paper, "source": run.paper_source, "steps": steps})
    return out


_KEY_FIELDS = {"data.name": "data", "data.data_dir": "data_dir", "data.batch_size": "batch",
               "data.train_limit": "train_limit", "model.name": "model", "model.activation": "act",
               "model.weight": "weight", "model.options": "options", "optim.name": "optim", "optim.lr": "lr",
               "optim.momentum": "momentum", "optim.weight_decay": "wd", "optim.schedule.kind": "lr_schedule",
               "optim.latent_clip": "latent_clip", "optim.gamma": "gamma", "optim.tau": "tau",
               "loss.name": "loss", "loss.label_smoothing": "label_smoothing", "augment.name": "augment",
               "cmim.alpha": "cmim_alpha", "init.from": "init", "train_only": "train_only",
               "trainer.epochs": "epochs", "trainer.limit_train_batches": "limit_batches"}


def _brief(cfg) -> str:
    """The hyperparameters that matter, as ``key=value`` (switches that are off are left out)."""
    from bnnlab.config import flatten

    flat = flatten(cfg.model_dump(by_alias=True))
    o = cfg.optim
    parts = []
    for k, label in _KEY_FIELDS.items():
        v = flat.get(k)
        if k == "model.options":
            v = ",".join(f"{a}:{b}" for a, b in cfg.model.options.items()) or None
        elif k == "optim.schedule.kind":
            s = o.schedule
            v = s.kind + (f"{s.milestones}x{s.factor:g}" if s.kind == "step" else "")
            v += f"->{s.end:g}" if s.kind in ("linear", "cosine") and s.end else ""
        elif k == "optim.weight_decay" and o.weight_decay:
            v = f"{o.weight_decay:g}" + ("" if o.weight_decay_on == "all" else f"({o.weight_decay_on})")
        elif k == "optim.momentum" and o.name != "sgd":
            v = None
        elif k in ("optim.gamma", "optim.tau") and o.name != "bop":
            v = None
        if v in (None, "", "none", "ce", "all", 0, 0.0) and k not in ("optim.lr",):
            continue
        parts.append(f"{label}={v:g}" if isinstance(v, float) else f"{label}={v}")
    if o.name == "bop" and o.gamma_schedule.kind != "constant":
        g = o.gamma_schedule
        parts.append(f"gamma_schedule={g.kind}" + (f"->{g.end:g}" if g.end else "")
                     + (f"{g.milestones}x{g.factor:g}" if g.kind == "step" else ""))
    if cfg.loss.name == "kd" and cfg.loss.teacher is not None:
        parts.append(f"teacher={cfg.loss.teacher.model}[{cfg.loss.teacher.checkpoint}]")
    if cfg.augment.name == "attentive" and cfg.augment.extractor is not None:
        parts.append(f"extractor={cfg.augment.extractor.model}[{cfg.augment.extractor.checkpoint}]")
    if cfg.cmim.alpha and cfg.cmim.teacher is not None:
        parts.append(f"cmim_teacher={cfg.cmim.teacher.model}[{cfg.cmim.teacher.checkpoint}]")
    if cfg.init.snap_weights:
        parts.append("snap_weights")
    return "  ".join(parts)


def _wide():
    """The console, at least 150 columns wide when writing to a pipe or file (tables stay readable)."""
    c = console()
    if not c.is_terminal:
        c.width = max(c.width, 150)
    return c


def _print_plan(recipe, plan, scale: str) -> None:
    from rich.table import Table

    c = _wide()
    t = Table(title=f"{recipe.name} -- plan at scale '{scale}' ({len(plan)} runs; nothing is trained)",
              show_lines=True)
    for col in ("#", "row", "seed", "paper", "step", "hyperparameters"):
        t.add_column(col, overflow="fold")
    for run in plan:
        paper = ", ".join(f"{k} {v}" for k, v in run.paper.items() if v is not None) or "-"
        for j, cfg in enumerate(run.steps):
            first = j == 0
            t.add_row(str(run.index) if first else "", f"{run.row_id}\n{run.row_label}" if first else "",
                      str(run.seed) if first else "", paper if first else "", cfg.name, _brief(cfg))
    c.print(t)
    if recipe.follows:
        c.print(f"follows: {recipe.follows}")
    if scale != "paper":
        c.print(f"[yellow]scale '{scale}' is a CPU proxy; its numbers are not comparable with the paper's.[/]")


def _stats(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _result_rows(recipe, plan, results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for row_id in dict.fromkeys(r.row_id for r in plan):
        runs = [r for r in plan if r.row_id == row_id]
        got = [results[r.index] for r in runs if r.index in results]
        top1 = [100.0 * g["top1"] for g in got if g.get("top1") is not None]
        mean, std = _stats(top1)
        paper_top1 = runs[0].paper.get("top1")
        rows.append({
            "row": row_id, "label": runs[0].row_label, "paper_top1": paper_top1, "source": runs[0].paper_source,
            "top1_mean": None if math.isnan(mean) else mean, "top1_std": None if math.isnan(std) else std,
            "seeds": [g["seed"] for g in got], "delta": (mean - paper_top1) if paper_top1 is not None
            and not math.isnan(mean) else None,
            "wall_s": sum(g["wall_s"] for g in got), "failed": [g["seed"] for g in got if g.get("error")],
            "run_ids": [g["run_id"] for g in got if g.get("run_id")],
        })
    return rows


def _print_results(recipe, scale: str, rows: list[dict[str, Any]], total_s: float) -> None:
    from rich.table import Table

    proxy = scale != "paper"
    title = (f"{recipe.name} at scale '{scale}': CPU PROXY -- top-1 here is not comparable with the "
             f"paper's absolute numbers (it checks the direction of each effect only)" if proxy
             else f"{recipe.name} at scale 'paper': reproduced vs paper (top-1, %)")
    t = Table(title=title)
    for col in ("row", "label", "paper top-1", "reproduced top-1 (mean +- std)", "delta", "wall"):
        t.add_column(col, justify="right" if col in ("paper top-1", "delta", "wall") else "left")
    for r in rows:
        repro = "-" if r["top1_mean"] is None else f"{r['top1_mean']:.2f} +- {r['top1_std']:.2f} (n={len(r['seeds'])})"
        if r["failed"]:
            repro += f" [red]failed seeds {r['failed']}[/]"
        paper = "-" if r["paper_top1"] is None else f"{r['paper_top1']:.1f}"
        if proxy:
            delta = "n/a (proxy)" if r["paper_top1"] is not None else "-"
        else:
            delta = "-" if r["delta"] is None else f"{r['delta']:+.2f}"
        t.add_row(r["row"], r["label"], paper, repro, delta, f"{r['wall_s']:.0f}s")
    c = _wide()
    c.print(t)
    c.print(f"total wall time {total_s:.0f}s")


@handle_errors
def reproduce(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A shipped recipe (see `bnnlab recipes`) or a path to a recipe YAML."),
    scale: str = typer.Option("mini", "--scale", help=_HELP_SCALE),
    rows: str = typer.Option(None, "--rows", help="Comma-separated row ids to run (default: all rows)."),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per row, 0..N-1 (default: the recipe's, per scale)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder that holds the dataset (paper scale)."),
    accelerator: str = typer.Option(None, "--accelerator", help="cpu, gpu, auto (default: the recipe's)."),
    devices: str = typer.Option(None, "--devices", help="Devices per node, or 'auto'."),
    num_nodes: int = typer.Option(None, "--num-nodes", help="Nodes for multi-node runs."),
    strategy: str = typer.Option(None, "--strategy", help="Lightning strategy, e.g. ddp."),
    precision: str = typer.Option(None, "--precision", help="32-true, bf16-mixed, 16-mixed."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the newest unfinished invocation of this recipe, scale and rows: "
                                "finished rows are kept, interrupted ones resume from their last epoch checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (rows x seeds x steps with the "
                                 "resolved hyperparameters); train nothing, write nothing to the store."),
    sets: list[str] = typer.Option(None, "--set", "-s", help="Override a key in every step: --set optim.lr=1e-3."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default: sqlite in ./bnnlab-runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan (--dry-run) or the results as JSON."),
) -> None:
    """Reproduce a paper's table from a recipe: every row x seed x step, tracked in MLflow.

    The default scale is `mini`, a CPU proxy on the bundled digits that finishes in minutes;
    `--scale paper` follows the paper exactly and needs GPUs and the dataset (`--data-dir`).
    Data (and any checkpoint a step needs) is checked for every planned step before anything
    trains. MLflow: experiment = recipe name, one parent run per invocation, a nested run per
    row and seed with the paper's numbers as tags.
    """
    from bnnlab.errors import BnnlabError
    from bnnlab.recipes import load_recipe

    recipe = load_recipe(name)
    flags = {"data.data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
             "trainer.accelerator": accelerator, "trainer.devices": devices, "trainer.num_nodes": num_nodes,
             "trainer.strategy": strategy, "trainer.precision": precision}
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_sets(sets))
    plan = recipe.plan(scale, rows=_split_rows(rows), seeds=seeds, overrides=overrides)
    if dry_run:
        if as_json:
            print_json({"recipe": recipe.name, "scale": scale, "follows": recipe.follows,
                        "proxy": scale != "paper", "runs": _plan_rows(recipe, plan)})
        else:
            _print_plan(recipe, plan, scale)
        return

    from bnnlab import runner
    from bnnlab.runner import run_steps

    run_kw: dict[str, Any] = {}
    if resume:
        if "resume" not in inspect.signature(run_steps).parameters:
            raise BnnlabError("--resume is not supported yet: the runner cannot resume runs in this version")
        run_kw["resume"] = True
    _check_inputs(plan)

    from bnnlab.tracking import Tracker

    tracker = Tracker(tracking_uri)
    # under DDP the launcher re-runs this command on every rank: only rank 0 writes the invocation
    rank0 = getattr(runner, "_is_rank_zero", lambda: True)()
    row_ids = ",".join(dict.fromkeys(r.row_id for r in plan))
    out = sys.stderr if as_json else sys.stdout
    inv, resumed = None, False
    if rank0 and resume:
        inv = _resumable_invocation(tracker, recipe.name, scale, row_ids)
        if inv is not None:
            resumed = True
            tracker.set_status(inv, "RUNNING")
            tracker.set_tags(inv, {"bnnlab.resumed_by": command_line(ctx, name)})
            print(f"resuming invocation run {inv}: finished rows are kept, unfinished ones continue",
                  file=out, flush=True)
    if rank0 and inv is None:
        inv_tags = {"bnnlab.level": "invocation", "bnnlab.command": "reproduce", "bnnlab.recipe": recipe.name,
                    "bnnlab.scale": scale, "bnnlab.argv": command_line(ctx, name), "bnnlab.rows": row_ids,
                    "bnnlab.seeds": str(max(r.seed for r in plan) + 1),
                    "bnnlab.proxy": str(scale != "paper").lower()}
        inv = tracker.start_run(recipe.name, f"{recipe.name}-{scale}", inv_tags)
    results: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    status = "FAILED"
    total, table, failed = 0.0, [], []
    try:
        if inv is not None and not resumed:
            import yaml

            tracker.log_params(inv, {"recipe": recipe.name, "scale": scale, "seeds": max(r.seed for r in plan) + 1,
                                     "rows": row_ids, **{f"set.{k}": v for k, v in overrides.items()}})
            tracker.log_text(inv, yaml.safe_dump(recipe.model_dump(mode="json", by_alias=True), sort_keys=False),
                             "recipe.yaml")
        for run in plan:
            steps = ", ".join(s.name for s in run.steps)
            head = f"[{run.index}/{run.total}] row {run.row_id} seed {run.seed}"
            if resumed:
                done = _finished_row(tracker, recipe.name, inv, run.steps)
                if done is not None:
                    results[run.index] = done
                    print(f"{head}: already finished (run {done['run_id']}), kept", file=out, flush=True)
                    continue
            print(f"{head} ({run.row_label}; step{'s' if len(run.steps) > 1 else ''}: {steps}) ...",
                  file=out, flush=True)
            tags = {"bnnlab.command": "reproduce", "bnnlab.recipe": recipe.name, "bnnlab.row": run.row_id,
                    "bnnlab.row_label": run.row_label, "bnnlab.scale": scale, "bnnlab.seed": run.seed,
                    "bnnlab.proxy": str(scale != "paper").lower()}
            tags.update({f"bnnlab.paper.{k}": v for k, v in run.paper.items() if v is not None})
            if run.paper_source:
                tags["bnnlab.paper.source"] = run.paper_source
            r0 = time.perf_counter()
            try:
                with contextlib.redirect_stdout(out):
                    res = run_steps(run.steps, tracker=tracker, experiment=recipe.name,
                                    run_name=f"{run.row_id}-s{run.seed}", tags=tags, parent_run_id=inv, **run_kw)
            except Exception as err:  # noqa: BLE001 -- one failed row must not lose the others
                if isinstance(err, KeyboardInterrupt):  # RunInterrupted: Ctrl-C / SIGTERM stops everything
                    raise
                msg = " ".join(f"{type(err).__name__}: {err}".split())[:500]
                print(f"{head} FAILED: {msg}", file=sys.stderr, flush=True)
                results[run.index] = {"seed": run.seed, "top1": None, "wall_s": time.perf_counter() - r0,
                                      "error": msg}
                continue
            m = res[-1].metrics
            results[run.index] = {"seed": run.seed, "top1": m.get("final/val_top1"),
                                  "best_top1": m.get("best/val_top1"), "wall_s": sum(r.wall_s for r in res),
                                  "run_id": res[-1].run_id, "steps": [r.run_id for r in res]}
        total = time.perf_counter() - t0
        table = _result_rows(recipe, plan, results)
        failed = [r for r in results.values() if r.get("error")]
        if inv is not None:
            metrics = {"time/total_s": total, "runs": float(len(plan)), "runs_failed": float(len(failed))}
            for r in table:
                if r["top1_mean"] is not None:
                    metrics[f"row/{r['row']}/top1_mean"] = r["top1_mean"]
                    metrics[f"row/{r['row']}/top1_std"] = r["top1_std"]
            tracker.log_metrics(inv, metrics)
            import json

            tracker.log_text(inv, json.dumps({"recipe": recipe.name, "scale": scale, "rows": table}, indent=2),
                             "results.json")
        status = "FAILED" if failed else "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        if inv is not None:
            tracker.end_run(inv, status)
    if not rank0:
        return
    if as_json:
        print_json({"recipe": recipe.name, "scale": scale, "proxy": scale != "paper", "invocation_run_id": inv,
                    "tracking_uri": tracker.uri, "total_s": total, "rows": table})
    else:
        _print_results(recipe, scale, table, total)
        console().print(f"invocation run {inv} in experiment '{recipe.name}' ({tracker.uri})")
    if failed:
        raise typer.Exit(1)


def _resumable_invocation(tracker, experiment: str, scale: str, row_ids: str) -> str | None:
    """The newest unfinished ``reproduce`` invocation of this recipe, scale and rows."""
    for r in tracker.search_runs(experiment, "tags.`bnnlab.level` = 'invocation'"):
        t = r.data.tags
        if (t.get("bnnlab.scale") == scale and t.get("bnnlab.rows") == row_ids
                and r.info.status != "FINISHED"):
            return r.info.run_id
    return None


def _finished_row(tracker, experiment: str, inv: str, steps) -> dict[str, Any] | None:
    """A FINISHED row run under ``inv`` with the same config hash, as a result entry."""
    from bnnlab.runner import config_hash

    h = config_hash(steps)
    found = tracker.search_runs(experiment, f"tags.`mlflow.parentRunId` = '{inv}' and "
                                            f"tags.`bnnlab.level` = 'row' and tags.`bnnlab.config_hash` = '{h}'")
    for r in found:
        if r.info.status == "FINISHED":
            m = r.data.metrics
            return {"seed": int(r.data.tags.get("bnnlab.seed", 0)), "top1": m.get("final/val_top1"),
                    "best_top1": m.get("best/val_top1"), "wall_s": m.get("time/total_s", 0.0),
                    "run_id": r.info.run_id, "reused": True}
    return None

