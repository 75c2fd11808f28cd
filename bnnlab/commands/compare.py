"""``bnnlab compare``: one base configuration, varied along axes, tracked and tabulated."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any

import typer

from bnnlab.commands._common import command_line, console, handle_errors, parse_sets, print_json

_AXIS_HELP = "Comma-separated values of {key} to compare."


@handle_errors
def compare(
    ctx: typer.Context,
    optimizers: str = typer.Option(None, "--optimizers", help=_AXIS_HELP.format(key="optim.name") + " e.g. adam,bop"),
    activations: str = typer.Option(None, "--activations",
                                    help=_AXIS_HELP.format(key="model.activation") + " e.g. ste,approx"),
    weights: str = typer.Option(None, "--weights", help=_AXIS_HELP.format(key="model.weight") + " e.g. sign,scaled"),
    losses: str = typer.Option(None, "--losses", help=_AXIS_HELP.format(key="loss.name")
                               + " e.g. ce,kd (kd without a teacher: a real-valued twin is trained first)."),
    augment: str = typer.Option(None, "--augment", help=_AXIS_HELP.format(key="augment.name")
                                + " e.g. none,cutmix,attentive (attentive without an extractor: one is trained "
                                  "first)."),
    vary: list[str] = typer.Option(None, "--vary", help="Vary any config key: --vary optim.lr=1e-3,1e-2 "
                                   "(repeatable; several axes give their product)."),
    model: str = typer.Option(None, "--model", "-m", help="Base model (default binary-mlp)."),
    epochs: int = typer.Option(None, "--epochs", "-e", help="Epochs per run (default 15)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Batch size."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (of the real-valued optimizer with bop)."),
    data: str = typer.Option(None, "--data", "-d", help="Dataset (default digits, bundled)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder that holds the dataset."),
    accelerator: str = typer.Option(None, "--accelerator", help="cpu (default), gpu, auto."),
    sets: list[str] = typer.Option(None, "--set", "-s", help="Override any base config key: --set optim.tau=1e-6."),
    recipe: str = typer.Option(None, "--recipe", help="Take the base from a recipe row (with --row, --scale)."),
    row: str = typer.Option(None, "--row", help="The recipe row whose steps are the base."),
    scale: str = typer.Option("mini", "--scale", help="Recipe scale: paper, mini, smoke."),
    steps: str = typer.Option(None, "--steps", help="Steps of a multi-step recipe row that the axes change "
                              "(comma-separated names, or 'all'; default: the last step)."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per variant (0..N-1)."),
    target: float = typer.Option(0.9, "--target", help="Top-1 (fraction) for the 'epochs to target' column."),
    experiment: str = typer.Option("compare", "--experiment", help="MLflow experiment name."),
    name: str = typer.Option(None, "--name", help="Invocation run name (default: 'compare <axes>')."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default: sqlite in ./bnnlab-runs)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Lightning's per-epoch lines of every run."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as Markdown."),
) -> None:
    """Train one base configuration along axes (their product) x seeds; print the comparison.

    Defaults run the binary MLP on the bundled digits on the CPU. Every run lands in MLflow
    under one invocation run (experiment 'compare'); `bnnlab report` turns it into Markdown.
    """
    from bnnlab.compare import build_axes
    from bnnlab.compare import compare as run_compare
    from bnnlab.config import apply_overrides, validate_config
    from bnnlab.errors import BnnlabError

    if as_json and markdown:
        raise BnnlabError("--json and --markdown exclude each other")
    axes = build_axes({"optimizers": optimizers, "activations": activations, "weights": weights,
                       "losses": losses, "augment": augment}, vary)
    flags = {"model.name": model, "trainer.epochs": epochs, "data.batch_size": batch_size, "optim.lr": lr,
             "data.name": data, "data.data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
             "trainer.accelerator": accelerator}
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_sets(sets))
    extra: dict[str, Any] = {}
    if recipe:
        base = _recipe_base(recipe, row, scale, overrides)
        extra = {"bnnlab.recipe": recipe, "bnnlab.row": base[1], "bnnlab.scale": scale}
        base = base[0]
    else:
        if row:
            raise BnnlabError("--row needs --recipe")
        base = apply_overrides({}, overrides)
        validate_config(base, source="compare options")
    if not axes:
        console(stderr=True).print("[yellow]no axes given (--optimizers, --vary, ...): running the base only[/]")
    out = sys.stderr if as_json or markdown else sys.stdout

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    sink = out if verbose else open(os.devnull, "w")  # noqa: SIM115 -- closed below
    try:
        with contextlib.redirect_stdout(sink):
            df = run_compare(base, axes, seeds=seeds, tracking_uri=tracking_uri, experiment=experiment, run_name=name,
                             target=target, extra_tags=extra, progress=say, steps=steps,
                             argv=command_line(ctx))
    finally:
        if sink is not out:
            sink.close()
    _show(df, target, as_json, markdown)


def _recipe_base(recipe: str, row: str | None, scale: str, overrides: dict[str, Any]):
    from bnnlab.errors import BnnlabError

    try:
        from bnnlab.recipes import load_recipe
    except ImportError:
        raise BnnlabError("--recipe: recipes are not available in this installation") from None
    rec = load_recipe(recipe)
    if row is None:
        if len(rec.rows) != 1:
            raise BnnlabError(f"--recipe {recipe}: give --row (rows: {', '.join(r.id for r in rec.rows)})")
        row = rec.rows[0].id
    plan = rec.plan(scale, rows=[row], seeds=1, overrides=overrides)
    return [cfg.model_dump(by_alias=True) for cfg in plan[0].steps], row


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _show(df, target: float, as_json: bool, markdown: bool) -> None:
    from bnnlab.compare import display_rows, format_table

    a = df.attrs
    if as_json:
        rows = [{k: _clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
        runs = [{"variant": r["variant"], "seed": r["seed"], "run_id": r["run_id"], "final_top1": r["final_top1"],
                 "best_top1": r["best_top1"], "epochs": r["epochs"], "total_s": r["total_s"],
                 "epoch_s": r["epoch_s"], "flip_ratio": r["flip_ratio"]} for r in a["runs"]]
        print_json({"invocation_run_id": a["invocation_run_id"], "experiment": a["experiment"],
                    "tracking_uri": a["tracking_uri"], "target": target, "variants": rows, "runs": runs})
        return
    if markdown:
        typer.echo(format_table(df, "markdown", target=target), nl=False)
        return
    from rich.table import Table

    header, body = display_rows(df, target)
    t = Table(title=f"compare ({int(df['seeds'].max()) if len(df) else 0} seed(s) per variant; "
                    f"top-1 in %, mean ± std over seeds)")
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for cells in body:
        t.add_row(*cells)
    c = console()
    if not c.is_terminal:
        c.width = max(c.width, 140)
    c.print(t)
    c.print(f"invocation run {a['invocation_run_id']} in experiment '{a['experiment']}' ({a['tracking_uri']}); "
            "`bnnlab report` writes it to results/")
