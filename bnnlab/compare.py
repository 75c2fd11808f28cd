"""Compare methods on equal footing: one base configuration, varied along axes.

    >>> from bnnlab.compare import compare
    >>> from bnnlab.tracking import Tracker
    >>> table = compare({"trainer": {"epochs": 5}}, {"optim.name": ["adam", "bop"]}, seeds=3,
    ...                 tracker=Tracker())
    >>> table[["variant", "final_top1_mean", "final_top1_std", "flip_ratio"]]

Every axis is a dotted config key with a list of values (``optim.name: [adam, bop]``); several
axes give their cartesian product (the first axis varies slowest). Each variant x seed
(seeds ``0..N-1``) is one row run, trained by :func:`bnnlab.runner.run_steps` and nested under
one *invocation* run (tags ``bnnlab.level=invocation``, ``bnnlab.command=compare``,
``bnnlab.axes``, ``bnnlab.argv``); row runs carry ``bnnlab.variant`` (``"optim.name=bop"``,
several axes joined by ``", "``) and ``bnnlab.seed``.

The base is one step config (a dict of :class:`~bnnlab.config.StepConfig` fields) or the
list of steps of a recipe row. With several steps the axis values are set on the **last**
step only (the one that produces the row's result; earlier steps are teachers, real-valued
pretraining or a first stage), unless ``steps`` names others (``"all"``: every step that is
not a *helper*, i.e. not used only as a teacher / extractor via ``step:NAME``).

Helpers (teachers). ``loss.name=kd`` needs a teacher and ``augment.name=attentive`` a feature
extractor. When the base gives none, compare trains one per seed before the variants that
need it, nested under the invocation (tags ``bnnlab.level=helper``, ``bnnlab.role``), and
points the variants at its checkpoint:

* KD teacher: the base model's real-valued twin (same model and options with
  ``activation=relu``, ``weight=real``), trained with Adam and cross-entropy on the same data
  for the same number of epochs;
* Attentive CutMix extractor: that same twin when its ``forward_features`` returns a feature
  map ``(N, C, h, w)`` (convolutional models), else a real-valued ``binary-cnn-tiny``.

The helper's training time is not counted in the variants' wall time. Give your own with
``--set loss.teacher.model=... --set loss.teacher.checkpoint=PATH`` (and
``augment.extractor.*``) to skip it.

The result table (:func:`summarize`) has, per variant: mean and sample std over seeds of the
final and best validation top-1, the epochs needed to reach ``target`` top-1 (the first epoch,
1-based and counted over all steps, whose ``val/top1`` is ``>= target``; mean over the seeds
that reach it), the mean wall time per epoch and, for Bop, the mean flip ratio.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import shlex
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from bnnlab.errors import BnnlabError
from bnnlab.tracking import env_tags

__all__ = ["AXIS_FLAGS", "config_keys", "check_key", "split_values", "parse_vary", "build_axes",
           "variants", "variant_label", "helper_steps", "target_steps", "variant_steps", "compare", "summarize",
           "format_table", "epochs_to_target", "env_tags"]

#: CLI flags of ``bnnlab compare`` and the config key each one varies.
AXIS_FLAGS: dict[str, str] = {
    "optimizers": "optim.name",
    "activations": "model.activation",
    "weights": "model.weight",
    "losses": "loss.name",
    "augment": "augment.name",
}

_REAL_TWIN = {"activation": "relu", "weight": "real"}
_FALLBACK_EXTRACTOR = "binary-cnn-tiny"


# --------------------------------------------------------------------------- axes


def _unwrap(annotation):
    """``X | None`` -> ``X``; anything else unchanged."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _walk(model_cls, prefix: str = "") -> tuple[list[str], list[str]]:
    """All dotted leaf keys of a pydantic model, and the dict-valued keys (open sections)."""
    from pydantic import BaseModel

    leaves: list[str] = []
    open_: list[str] = []
    for name, info in model_cls.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        ann = _unwrap(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sub_leaves, sub_open = _walk(ann, key + ".")
            leaves += sub_leaves
            open_ += sub_open
        elif typing.get_origin(ann) is dict or ann is dict:
            open_.append(key)
            leaves.append(key)
        else:
            leaves.append(key)
    return leaves, open_


def config_keys() -> list[str]:
    """Every dotted key a step config has (``optim.name``, ``model.options``, ...)."""
    from bnnlab.config import StepConfig

    return _walk(StepConfig)[0]


def check_key(key: str) -> None:
    """Raise a one-line :class:`BnnlabError` (with a suggestion) unless ``key`` is a config key.

    Keys under an open mapping (``model.options.hidden``, ``data.options.x``) are accepted.
    """
    from bnnlab.config import StepConfig

    leaves, open_ = _walk(StepConfig)
    if key in leaves or any(key.startswith(o + ".") for o in open_):
        return
    close = difflib.get_close_matches(key, leaves, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    section = key.split(".")[0]
    where = [k for k in leaves if k.split(".")[0] == section]
    known = f" Keys under '{section}': {', '.join(where)}" if where and not close else ""
    raise BnnlabError(f"--vary: unknown config key '{key}'.{hint}{known}")


def split_values(text: str) -> list[str]:
    """Split ``"a,b,[1,2]"`` on top-level commas -> ``["a", "b", "[1,2]"]``."""
    out, depth, cur = [], 0, ""
    for ch in str(text):
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def parse_vary(items: list[str] | None) -> dict[str, list[str]]:
    """``["optim.lr=1e-3,1e-2"]`` -> ``{"optim.lr": ["1e-3", "1e-2"]}`` (keys checked)."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, values = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise BnnlabError(f"--vary expects KEY=V1,V2,..., got '{item}'")
        check_key(key)
        vals = split_values(values)
        if not vals:
            raise BnnlabError(f"--vary {key}: no values given")
        if key in out:
            raise BnnlabError(f"--vary {key} given twice")
        out[key] = vals
    return out


def build_axes(flags: dict[str, str | None], vary: list[str] | None = None) -> dict[str, list[str]]:
    """Axes from the CLI flags (``{"optimizers": "adam,bop"}``) and ``--vary`` items, in order."""
    axes: dict[str, list[str]] = {}
    for flag, key in AXIS_FLAGS.items():
        text = flags.get(flag)
        if text is None:
            continue
        vals = split_values(text)
        if not vals:
            raise BnnlabError(f"--{flag}: no values given")
        axes[key] = vals
    for key, vals in parse_vary(vary).items():
        if key in axes:
            raise BnnlabError(f"--vary {key}: that axis is already given by its own flag")
        axes[key] = vals
    for key, vals in axes.items():
        dup = sorted({v for v in vals if vals.count(v) > 1})
        if dup:
            raise BnnlabError(f"axis {key}: value(s) given twice: {', '.join(dup)}")
    return axes


def variants(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the axes, first axis slowest; no axes -> one empty variant."""
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(axes[k] for k in keys))]


def variant_label(assign: dict[str, Any]) -> str:
    """Stable label of a variant: ``"optim.name=bop, model.activation=ste"`` (``"base"`` if none)."""
    return ", ".join(f"{k}={v}" for k, v in assign.items()) or "base"


# --------------------------------------------------------------------------- configs


def helper_steps(steps: list[dict]) -> set[str]:
    """Names of steps that later steps use only as a teacher / extractor (``step:NAME``)."""
    used: set[str] = set()
    init_refs: set[str] = set()
    for s in steps:
        for section, key in (("loss", "teacher"), ("cmim", "teacher"), ("augment", "extractor")):
            spec = (s.get(section) or {}).get(key) or {}
            ref = str(spec.get("checkpoint") or "")
            if ref.startswith("step:"):
                used.add(ref[len("step:"):])
        ref = str((s.get("init") or {}).get("from") or "")
        if ref.startswith("step:"):
            init_refs.add(ref[len("step:"):])
    return used - init_refs


def _needs(step: dict) -> set[str]:
    need = set()
    if (step.get("loss") or {}).get("name") == "kd" and not (step.get("loss") or {}).get("teacher"):
        need.add("teacher")
    if (step.get("augment") or {}).get("name") == "attentive" and not (step.get("augment") or {}).get("extractor"):
        need.add("extractor")
    return need


def target_steps(base_steps: list[dict], steps: str | list[str] | None = None) -> set[str]:
    """Names of the steps the axes change: the last step (default), ``"all"`` non-helper steps,
    or the named ones."""
    names = [str(s.get("name", "train")) for s in base_steps]
    if steps is None or steps == [] or steps == "":
        return {names[-1]}
    wanted = split_values(steps) if isinstance(steps, str) else list(steps)
    if wanted == ["all"]:
        skip = helper_steps(base_steps)
        return {n for n in names if n not in skip} or {names[-1]}
    for w in wanted:
        if w not in names:
            from bnnlab.errors import UnknownNameError

            raise UnknownNameError("step of the base", w, names)
    return set(wanted)


def variant_steps(base_steps: list[dict], assign: dict[str, Any], seed: int,
                  helpers: dict[str, dict] | None = None, *, source: str = "compare",
                  apply_to: set[str] | None = None) -> list:
    """Validated :class:`~bnnlab.config.StepConfig` list of one variant and seed.

    The axis values go to the steps in ``apply_to`` (default: :func:`target_steps`, the last
    step). ``helpers`` maps ``"teacher"`` / ``"extractor"`` to a :class:`TeacherConfig` dict
    that is filled in where such a step needs one and has none (a placeholder checkpoint is
    fine for validation).
    """
    from bnnlab.config import validate_config

    apply_to = target_steps(base_steps) if apply_to is None else apply_to
    out = []
    for step in base_steps:
        data = copy.deepcopy(step)
        if str(step.get("name", "train")) in apply_to:
            data = _apply(data, assign)
            for need in sorted(_needs(data)):
                spec = (helpers or {}).get(need)
                if spec is None:
                    continue
                section, key = ("loss", "teacher") if need == "teacher" else ("augment", "extractor")
                data.setdefault(section, {})[key] = copy.deepcopy(spec)
        data["seed"] = seed
        label = variant_label(assign)
        where = f"{source}: variant '{label}'" + (f", step '{data.get('name')}'" if len(base_steps) > 1 else "")
        out.append(validate_config(data, source=where))
    return out


def _apply(step: dict, assign: dict[str, Any]) -> dict:
    from bnnlab.config import apply_overrides

    return apply_overrides(step, assign)


def _twin_spec(step: dict) -> dict:
    model = step.get("model") or {}
    opts = {k: v for k, v in (model.get("options") or {}).items() if k not in _REAL_TWIN}
    return {"model": model.get("name", "binary-mlp"), "options": {**opts, **_REAL_TWIN}}


def _helper_specs(base_steps: list[dict], apply_to: set[str]) -> dict[str, dict]:
    """Model specs (no checkpoint yet) of the helpers compare would train for this base."""
    from bnnlab.config import validate_config
    from bnnlab.runner import datamodule_for
    from bnnlab.training import build_frozen

    ref = _reference_step(base_steps, apply_to)
    twin = _twin_spec(ref)
    cfg = validate_config({k: v for k, v in ref.items() if k not in ("loss", "augment", "cmim")},
                          source="compare base")
    dm = datamodule_for(cfg)
    from bnnlab.config import TeacherConfig

    try:
        net = build_frozen(TeacherConfig(**twin), dm.num_classes, dm.in_channels, dm.input_size)
    except BnnlabError as err:
        raise BnnlabError(f"cannot build the real-valued twin of '{twin['model']}' as teacher: {err}; "
                          "give one with --set loss.teacher.model=... --set loss.teacher.checkpoint=PATH") from None
    import torch

    with torch.no_grad():
        feats = net.forward_features(torch.zeros(2, dm.in_channels, dm.input_size, dm.input_size))
    extractor = twin if feats.dim() == 4 else {"model": _FALLBACK_EXTRACTOR, "options": dict(_REAL_TWIN)}
    return {"teacher": twin, "extractor": extractor}


def _reference_step(base_steps: list[dict], apply_to: set[str]) -> dict:
    """The step whose data and model the helpers copy: the last step the axes change."""
    main = [s for s in base_steps if str(s.get("name", "train")) in apply_to]
    return copy.deepcopy((main or base_steps)[-1])


def _helper_config(spec: dict, ref: dict, seed: int, role: str):
    from bnnlab.config import validate_config

    data = {"name": role, "seed": seed, "data": copy.deepcopy(ref.get("data") or {}),
            "model": {"name": spec["model"], "options": copy.deepcopy(spec.get("options") or {})},
            "trainer": copy.deepcopy(ref.get("trainer") or {})}
    return validate_config(data, source=f"compare {role}")




# --------------------------------------------------------------------------- running


def _argv() -> str:
    return f"(python API: bnnlab.compare.compare; process {shlex.join(sys.argv) or 'python'})"


def compare(base: dict | list[dict], axes: dict[str, list[Any]], seeds: int = 1, tracker=None, *,
            experiment: str = "compare", run_name: str | None = None, target: float = 0.9,
            argv: str | None = None, extra_tags: dict[str, Any] | None = None,
            progress: Callable[[str], None] | None = print, tracking_uri: str | None = None,
            steps: str | list[str] | None = None):
    """Train every variant x seed of ``base`` along ``axes``; return the summary DataFrame.

    Args:
        base: one step config dict, or the list of step dicts of a recipe row.
        axes: dotted config key -> values; their product gives the variants.
        seeds: seeds ``0..seeds-1`` per variant.
        tracker: a :class:`~bnnlab.tracking.Tracker`; default: one on ``tracking_uri`` (or the
            default store), opened only after every variant validated.
        experiment: MLflow experiment of the invocation and every run.
        target: the top-1 accuracy (fraction) for the "epochs to target" column.
        steps: which steps of a multi-step base the axes change (default: the last; ``"all"``).
        progress: called with one line per run (``None``: silent).

    Returns:
        :func:`summarize`'s DataFrame (one row per variant); ``df.attrs`` holds
        ``invocation_run_id``, ``tracking_uri`` and ``runs`` (one dict per trained run).
    """
    from bnnlab.tracking import Tracker

    if seeds < 1:
        raise BnnlabError(f"--seeds must be >= 1, got {seeds}")
    if not 0 < target <= 1:
        raise BnnlabError(f"--target is a top-1 fraction in (0, 1], got {target}")
    base_steps = [copy.deepcopy(base)] if isinstance(base, dict) else [copy.deepcopy(s) for s in base]
    if not base_steps:
        raise BnnlabError("compare: the base has no steps")
    for k in axes:
        check_key(k)
    axes = {k: list(v) for k, v in axes.items()}
    combos = variants(axes)
    labels = [variant_label(a) for a in combos]
    # validate everything (with placeholder helpers) before anything trains or reaches the store
    placeholder = {"teacher": {"model": "mlp", "checkpoint": "pending"},
                   "extractor": {"model": "mlp", "checkpoint": "pending"}}
    apply_to = target_steps(base_steps, steps)
    needs_by_variant = []
    for assign in combos:
        variant_steps(base_steps, assign, 0, placeholder, apply_to=apply_to)
        needs: set[str] = set()
        for raw in base_steps:
            if str(raw.get("name", "train")) in apply_to:
                needs |= _needs(_apply(raw, assign))
        needs_by_variant.append(needs)
    specs = _helper_specs(base_steps, apply_to) if any(needs_by_variant) else {}
    for assign, needs in zip(combos, needs_by_variant, strict=True):  # the real helper models validate too
        if needs:
            variant_steps(base_steps, assign, 0, {k: {**specs[k], "checkpoint": "pending"} for k in needs},
                          apply_to=apply_to)

    tracker = tracker or Tracker(tracking_uri)
    say = progress or (lambda _msg: None)
    axes_tag = "; ".join(f"{k}={','.join(str(v) for v in vals)}" for k, vals in axes.items()) or "(none)"
    name = run_name or ("compare " + (" x ".join(axes) or "base"))
    inv_tags = {"bnnlab.level": "invocation", "bnnlab.command": "compare", "bnnlab.axes": axes_tag,
                "bnnlab.axes_json": json.dumps(axes)[:5000],
                "bnnlab.variants": json.dumps(labels) if len(json.dumps(labels)) < 5000 else "",
                "bnnlab.seeds": seeds, "bnnlab.target": target,
                "bnnlab.axis_steps": ",".join(n for n in (str(s.get("name", "train")) for s in base_steps)
                                              if n in apply_to), "bnnlab.argv": argv or _argv(),
                **env_tags(), **{k: v for k, v in (extra_tags or {}).items()}}
    inv = tracker.start_run(experiment, name, inv_tags)
    runs: list[dict[str, Any]] = []
    status = "FAILED"
    helper_ckpt: dict[tuple[str, int], str] = {}
    try:
        import yaml

        tracker.log_text(inv, yaml.safe_dump({"steps": base_steps, "axes": axes, "seeds": seeds},
                                             sort_keys=False), "compare.yaml")
        total = len(combos) * seeds
        i = 0
        ref = _reference_step(base_steps, apply_to)
        for assign, label, needs in zip(combos, labels, needs_by_variant, strict=True):
            for seed in range(seeds):
                i += 1
                helpers = {}
                for role in sorted(needs):
                    key = (json.dumps(specs[role], sort_keys=True), seed)
                    if key not in helper_ckpt:
                        helper_ckpt[key] = _train_helper(tracker, experiment, inv, specs[role], ref, seed,
                                                         role, say)
                    helpers[role] = {**specs[role], "checkpoint": helper_ckpt[key]}
                cfgs = variant_steps(base_steps, assign, seed, helpers, apply_to=apply_to)
                say(f"[{i}/{total}] {label} seed {seed} ...")
                rec = _run_variant(tracker, experiment, inv, cfgs, label, assign, seed, target)
                runs.append(rec)
                flip = rec.get("flip_ratio")
                say(f"[{i}/{total}] {label} seed {seed}: final top-1 {rec['final_top1']:.4f} "
                    f"(best {rec['best_top1']:.4f})"
                    + (f", flip ratio {flip:.2e}" if flip is not None and not math.isnan(flip) else "")
                    + f" in {rec['total_s']:.1f}s")
        df = summarize(runs, target=target, order=labels, axes=axes)
        tracker.log_text(inv, format_table(df, "markdown", target=target), "compare.md")
        tracker.log_text(inv, df.to_json(orient="records", indent=2), "compare.json")
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        tracker.end_run(inv, status)
    df.attrs.update({"invocation_run_id": inv, "tracking_uri": tracker.uri, "experiment": experiment,
                     "runs": runs, "target": target})
    return df


def _train_helper(tracker, experiment, inv, spec, ref, seed, role, say) -> str:
    from bnnlab.runner import run_steps

    cfg = _helper_config(spec, ref, seed, role)
    say(f"training {role} (real-valued {spec['model']}) for seed {seed} ...")
    tags = {"bnnlab.command": "compare", "bnnlab.role": role, "bnnlab.seed": seed}
    (res,) = run_steps([cfg], tracker=tracker, experiment=experiment, run_name=f"{role} s{seed}",
                       tags=tags, parent_run_id=inv)
    tracker.set_tags(res.run_id, {"bnnlab.level": "helper"})
    say(f"{role} seed {seed}: val top-1 {res.metrics.get('final/val_top1', float('nan')):.4f}")
    return str(res.checkpoint)


def _run_variant(tracker, experiment, inv, cfgs, label, assign, seed, target) -> dict[str, Any]:
    from bnnlab.report import load_row
    from bnnlab.runner import run_steps

    tags = {"bnnlab.command": "compare", "bnnlab.variant": label, "bnnlab.seed": seed,
            **{f"bnnlab.axis.{k}": v for k, v in assign.items()}}
    res = run_steps(cfgs, tracker=tracker, experiment=experiment, run_name=f"{label} s{seed}", tags=tags,
                    parent_run_id=inv)
    row_id = res[0].run_id
    if len(res) > 1:
        row_id = tracker.get_run(res[0].run_id).data.tags.get("mlflow.parentRunId", row_id)
    rec = load_row(tracker.client, tracker.get_run(row_id))
    rec.update({"variant": label, "seed": seed, "axes": dict(assign)})
    return rec


# --------------------------------------------------------------------------- tables


def epochs_to_target(history: list[tuple[float, float]], target: float) -> float | None:
    """First x (1-based epoch) at which the series reaches ``target``; ``None`` if never."""
    for x, y in history:
        if y >= target - 1e-12:
            return float(x)
    return None


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else math.nan
    return mean, std


def summarize(runs: list[dict[str, Any]], target: float = 0.9, order: list[str] | None = None,
              axes: dict[str, list] | None = None):
    """One row per variant from per-run records (as :func:`bnnlab.report.load_row` gives them,
    plus ``variant``).

    Columns: ``variant``, one per axis key (when ``axes`` given), ``seeds``,
    ``final_top1_mean``/``_std``, ``best_top1_mean``/``_std``, ``epochs_to_target`` (mean over
    the seeds that reach it, NaN if none), ``reached`` (how many seeds did), ``epochs``,
    ``epoch_s`` (mean wall time per epoch), ``flip_ratio`` (mean Bop flip ratio, NaN without Bop).
    Accuracies are fractions; the std is the sample std (NaN with one seed).
    """
    import pandas as pd

    labels = list(order or [])
    for r in runs:
        if r["variant"] not in labels:
            labels.append(r["variant"])
    rows = []
    for label in labels:
        group = sorted((r for r in runs if r["variant"] == label), key=lambda r: r.get("seed", 0))
        if not group:
            continue
        f_mean, f_std = _mean_std([r.get("final_top1") for r in group])
        b_mean, b_std = _mean_std([r.get("best_top1") for r in group])
        reach = [epochs_to_target(r.get("history", {}).get("val/top1", []), target) for r in group]
        hit = [e for e in reach if e is not None]
        flips = [r.get("flip_ratio") for r in group if r.get("flip_ratio") is not None]
        row = {"variant": label}
        for k in axes or {}:
            row[k] = str(group[0].get("axes", {}).get(k, ""))
        row.update({
            "seeds": len(group),
            "final_top1_mean": f_mean, "final_top1_std": f_std,
            "best_top1_mean": b_mean, "best_top1_std": b_std,
            "epochs_to_target": sum(hit) / len(hit) if hit else math.nan,
            "reached": len(hit),
            "epochs": _mean_std([r.get("epochs") for r in group])[0],
            "epoch_s": _mean_std([r.get("epoch_s") for r in group])[0],
            "flip_ratio": _mean_std(flips)[0] if flips else math.nan,
        })
        rows.append(row)
    cols = ["variant", *(axes or {}), "seeds", "final_top1_mean", "final_top1_std", "best_top1_mean",
            "best_top1_std", "epochs_to_target", "reached", "epochs", "epoch_s", "flip_ratio"]
    return pd.DataFrame(rows, columns=cols)


def _pm(mean: float, std: float, n: int) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    if n < 2 or std is None or math.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def display_rows(df, target: float = 0.9) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the comparison table (accuracies in percent)."""
    has_flip = "flip_ratio" in df and df["flip_ratio"].notna().any()
    header = ["variant", "seeds", "final top-1 (%)", "best top-1 (%)", f"epochs to {100 * target:g}%",
              "s/epoch"] + (["Bop flip ratio"] if has_flip else [])
    body = []
    for _, r in df.iterrows():
        n = int(r["seeds"])
        if math.isnan(r["epochs_to_target"]):
            reach = "-"
        else:
            reach = f"{r['epochs_to_target']:.1f}" + (f" ({int(r['reached'])}/{n})" if int(r["reached"]) < n else "")
        cells = [str(r["variant"]), str(n), _pm(r["final_top1_mean"], r["final_top1_std"], n),
                 _pm(r["best_top1_mean"], r["best_top1_std"], n), reach,
                 "-" if math.isnan(r["epoch_s"]) else f"{r['epoch_s']:.2f}"]
        if has_flip:
            cells.append("-" if math.isnan(r["flip_ratio"]) else f"{r['flip_ratio']:.2e}")
        body.append(cells)
    return header, body


def format_table(df, fmt: str = "markdown", target: float = 0.9) -> str:
    """The comparison table as Markdown (``fmt="markdown"``) or plain text."""
    import pandas as pd

    header, body = display_rows(df, target)
    table = pd.DataFrame(body, columns=header)
    if fmt == "markdown":
        align = ["left"] + ["right"] * (len(header) - 1)
        return table.to_markdown(index=False, colalign=align, disable_numparse=True) + "\n"
    return table.to_string(index=False) + "\n"
