"""Runs a plan: one or more ordered training steps, each its own MLflow run.

``run_steps`` is the single door through which ``train``, ``reproduce`` and ``compare``
train anything. For every step it resolves references to earlier steps
(``init.from: previous`` / ``step:NAME``, teacher ``checkpoint: step:NAME``), checks the
data before touching the store, creates the MLflow run with tags and the flattened
config as params, trains with Lightning, logs the final checkpoint and summary metrics,
and ends the run as FINISHED, FAILED (with ``bnnlab.failure`` tag) or KILLED.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bnnlab.config import StepConfig, flatten
from bnnlab.errors import BnnlabError
from bnnlab.tracking import Tracker, checkpoint_dir, make_lightning_logger

__all__ = ["StepResult", "run_steps", "quiet_lightning"]


@dataclass
class StepResult:
    name: str
    run_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    wall_s: float = 0.0


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter (GPU/TPU availability, tips)."""
    import lightning  # noqa: F401 -- sets its logger levels on import; override them after

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def _resolve_refs(cfg: StepConfig, done: dict[str, StepResult], prev: StepResult | None) -> StepConfig:
    """Replace ``previous`` / ``step:NAME`` references with checkpoint paths."""

    def ckpt(ref: str, what: str) -> str:
        if ref == "previous":
            if prev is None:
                raise BnnlabError(f"step '{cfg.name}': {what} 'previous' but it is the first step")
            return str(prev.checkpoint)
        name = ref[len("step:"):]
        if name not in done:
            raise BnnlabError(f"step '{cfg.name}': {what} '{ref}' names no earlier step "
                              f"(earlier: {', '.join(done) or 'none'})")
        return str(done[name].checkpoint)

    data = cfg.model_dump(by_alias=True)
    src = data["init"]["from"]
    if src and (src == "previous" or src.startswith("step:")):
        data["init"]["from"] = ckpt(src, "init.from")
    for section, key in (("loss", "teacher"), ("cmim", "teacher"), ("augment", "extractor")):
        spec = data[section].get(key)
        if spec and spec.get("checkpoint") and str(spec["checkpoint"]).startswith("step:"):
            spec["checkpoint"] = ckpt(spec["checkpoint"], f"{section}.{key}.checkpoint")
    return StepConfig.model_validate(data)


def _datamodule(cfg: StepConfig):
    from bnnlab.data import create_datamodule

    d = cfg.data
    dm = create_datamodule(
        d.name, data_dir=d.data_dir, batch_size=d.batch_size, seed=cfg.seed,
        val_fraction=d.val_fraction, download=d.download, augment=d.augment,
        num_workers=d.num_workers, image_size=d.image_size, train_limit=d.train_limit,
        val_limit=d.val_limit, normalize=d.normalize, **d.options)
    dm.check()
    return dm


def _trainer(cfg: StepConfig, run_id: str, tracker: Tracker, label: str, history, extra_callbacks):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from bnnlab.callbacks import progress_callback

    t = cfg.trainer
    # save_top_k=0 + save_last: last.ckpt is the latest epoch (not a copy of the best one)
    ckpt_cb = ModelCheckpoint(dirpath=str(checkpoint_dir(run_id)), save_top_k=0, save_last=True,
                              every_n_epochs=1)
    kw: dict[str, Any] = {}
    if t.limit_train_batches is not None:
        kw["limit_train_batches"] = t.limit_train_batches
    if t.limit_val_batches is not None:
        kw["limit_val_batches"] = t.limit_val_batches
    return L.Trainer(
        max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, precision=t.precision, deterministic=t.deterministic,
        logger=make_lightning_logger(tracker, run_id),
        callbacks=[ckpt_cb, history, progress_callback(label), *extra_callbacks],
        enable_model_summary=False, num_sanity_val_steps=0, enable_progress_bar=_tty(), log_every_n_steps=1,
        enable_checkpointing=True, default_root_dir=str(checkpoint_dir(run_id)), **kw)


def _tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _summary(history) -> dict[str, float]:
    out: dict[str, float] = {}
    eps = history.epochs
    if not eps:
        return out
    last = eps[-1]
    for k in ("val/top1", "val/top5", "val/loss", "train/loss"):
        if k in last:
            out[f"final/{k.replace('/', '_')}"] = last[k]
    vals = [e["val/top1"] for e in eps if "val/top1" in e]
    if vals:
        out["best/val_top1"] = max(vals)
    flips = [e["bop/flip_ratio"] for e in eps if "bop/flip_ratio" in e]
    if flips:
        out["mean/bop_flip_ratio"] = sum(flips) / len(flips)
    times = [e["time/epoch_s"] for e in eps if "time/epoch_s" in e]
    if times:
        out["mean/epoch_s"] = sum(times) / len(times)
    out["epochs"] = float(len(eps))
    return out


def run_steps(steps: list[StepConfig], *, tracker: Tracker, experiment: str, run_name: str,
              tags: dict[str, Any] | None = None, parent_run_id: str | None = None,
              extra_callbacks: list | None = None) -> list[StepResult]:
    """Train ``steps`` in order; return one :class:`StepResult` per step.

    With several steps a procedure run is created (under ``parent_run_id`` if given) and
    every step is a run nested under it; a single step is a run of its own. The run that
    stands for the whole row (the procedure, or the single step) is tagged
    ``bnnlab.level=row`` and carries the summary metrics (``final/val_top1``,
    ``best/val_top1``, ``mean/bop_flip_ratio``, ``mean/epoch_s``, ``epochs``,
    ``time/total_s``); nested steps are tagged ``bnnlab.level=step``.
    """
    import torch

    quiet_lightning()
    tags = dict(tags or {})
    # check every step's data before anything reaches the store
    for cfg in steps:
        _datamodule(cfg)
    proc_id = parent_run_id
    if len(steps) > 1:
        proc_id = tracker.start_run(experiment, run_name, {**tags, "bnnlab.kind": "procedure", "bnnlab.level": "row",
                                    "bnnlab.steps": ",".join(s.name for s in steps)}, parent_run_id)
    done: dict[str, StepResult] = {}
    prev: StepResult | None = None
    results: list[StepResult] = []
    try:
        for i, raw in enumerate(steps):
            cfg = _resolve_refs(raw, done, prev)
            res = _run_one(cfg, i, len(steps), tracker, experiment, run_name, tags, proc_id,
                           extra_callbacks or [], torch)
            results.append(res)
            done[cfg.name] = prev = res
        if len(steps) > 1:
            total = {**results[-1].metrics, "time/total_s": sum(r.wall_s for r in results),
                     "epochs": sum(r.metrics.get("epochs", 0.0) for r in results)}
            tracker.log_metrics(proc_id, total)
            tracker.end_run(proc_id, "FINISHED")
    except BaseException as err:
        if len(steps) > 1 and proc_id:
            status = "KILLED" if isinstance(err, KeyboardInterrupt | SystemExit) else "FAILED"
            tracker.end_run(proc_id, status)
        raise
    return results


def _run_one(cfg, i, n, tracker, experiment, run_name, tags, parent_id, extra_callbacks, torch):
    import lightning as L

    from bnnlab.callbacks import History
    from bnnlab.training import BnnModule

    dm = _datamodule(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    info = dict(num_classes=dm.num_classes, in_channels=dm.in_channels, input_size=dm.input_size,
                train_size=dm.train_size)
    module = BnnModule(cfg.model_dump(by_alias=True), info)  # may raise on bad names/checkpoints
    name = run_name if n == 1 else f"{run_name}/{cfg.name}"
    step_tags = {**tags, "bnnlab.kind": "step", "bnnlab.level": "row" if n == 1 else "step",
                 "bnnlab.step": cfg.name, "bnnlab.step_index": i,
                 "bnnlab.model": cfg.model.name, "bnnlab.optimizer": cfg.optim.name,
                 "bnnlab.seed": cfg.seed}
    run_id = tracker.start_run(experiment, name, step_tags, parent_id)
    t0 = time.perf_counter()
    try:
        tracker.log_params(run_id, {**flatten(cfg.model_dump(by_alias=True)), **{
            f"data_info.{k}": v for k, v in info.items()}})
        tracker.log_text(run_id, yaml.safe_dump(cfg.model_dump(by_alias=True), sort_keys=False),
                         "config.yaml")
        history = History()
        trainer = _trainer(cfg, run_id, tracker, name, history, extra_callbacks)
        trainer.fit(module, datamodule=dm)
        if trainer.interrupted:
            raise KeyboardInterrupt
    except (KeyboardInterrupt, SystemExit):
        tracker.set_tags(run_id, {"bnnlab.failure": "interrupted"})
        tracker.end_run(run_id, "KILLED")
        raise
    except BaseException as err:
        tracker.set_tags(run_id, {"bnnlab.failure": f"{type(err).__name__}: {err}"[:4000]})
        tracker.end_run(run_id, "FAILED")
        raise
    wall = time.perf_counter() - t0
    ckpt = checkpoint_dir(run_id) / "last.ckpt"
    metrics = {**_summary(history), "time/total_s": wall}
    tracker.log_metrics(run_id, metrics, step=int(metrics.get("epochs", 1)))
    if ckpt.is_file():
        tracker.log_artifact(run_id, ckpt, "checkpoints")
    tracker.end_run(run_id, "FINISHED")
    return StepResult(cfg.name, run_id, "FINISHED", metrics, ckpt, wall)
