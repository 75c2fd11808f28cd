"""Runs a plan: one or more ordered training steps, each its own MLflow run.

``run_steps`` is the single door through which ``train``, ``reproduce`` and ``compare``
train anything. For every step it resolves references to earlier steps
(``init.from: previous`` / ``step:NAME``, teacher ``checkpoint: step:NAME``), checks the
data before touching the store, creates the MLflow run with tags and the flattened
config as params, trains with Lightning, logs the final checkpoint and summary metrics,
and ends the run as FINISHED, FAILED (with ``bnnlab.failure`` tag) or KILLED.

Tags and metrics: the run that stands for a whole row (the procedure of a multi-step
plan, or the single step) is tagged ``bnnlab.level=row`` and ``bnnlab.config_hash`` (a
hash of the plan's configs without operational fields such as devices or data_dir) and
carries the summary metrics ``final/val_top1``, ``best/val_top1``, ``mean/bop_flip_ratio``,
``mean/epoch_s``, ``epochs``, ``time/total_s``; steps are tagged ``bnnlab.level=step``.
Per-epoch metrics (``val/top1``, ``train/loss``, ...) use the epoch index as MLflow step.

Reliability:

* Checkpoints. ``checkpoints/<run_id>/last.ckpt`` is written atomically at the end of
  every epoch (model, both optimizers incl. Bop's momentum, loop counters, per-epoch
  metrics). Data order and random draws are functions of ``(seed, epoch)``, so epoch *k*
  is the same whether the run was interrupted or not: a killed-and-resumed run on CPU
  ends with exactly the metrics of an uninterrupted one.
* No duplicated metrics. An epoch's metrics are logged only after its checkpoint is on
  disk; a resume restarts after that checkpoint and so never logs an epoch twice. If the
  process died between the save and the log, the resume back-fills the missing points
  from the checkpoint (per key), so the series has no gap either.
* Resume (``resume=``). ``True``/``"auto"``: continue the newest unfinished (RUNNING
  whose process is gone, or KILLED) row run in ``experiment`` with the same
  ``bnnlab.config_hash`` (and parent), else start a new run. A run id: continue that run
  (a step run id means its procedure); it must be unfinished and have the same config
  hash, else a one-line error. The run is reopened (RUNNING), ``bnnlab.resumes`` counts
  the resumes, and it ends FINISHED in place: one run, one metric series. Steps of a
  procedure that FINISHED are not rerun (their checkpoints are reused); an unfinished
  step continues from its ``last.ckpt`` (or from scratch, if it died in epoch 0).
  A RUNNING run is told from a live one by a ``flock`` on ``checkpoints/<run_id>/.lock``
  that dies with its process.
* Signals. Ctrl-C (SIGINT) and SIGTERM stop training, save ``interrupted.ckpt`` (the
  weights at that moment, for inspection; resume uses the epoch-exact ``last.ckpt``),
  mark the run KILLED and raise :class:`RunInterrupted` (exit 130 / 143 in the CLI).
* Numeric faults. A NaN/Inf loss raises :class:`~bnnlab.training.NonFiniteLossError`
  (exit 3) naming epoch, batch and global step and the last good checkpoint, which is
  kept; the run is FAILED with the reason in ``bnnlab.failure``.
* DDP. Only global rank 0 touches the store. Rank 0 passes the run ids and resume
  checkpoints to the processes Lightning launches (environment ``BNNLAB_DDP_CONTEXT``);
  ranks started externally (torchrun, srun) find the same run read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bnnlab.config import StepConfig, flatten
from bnnlab.errors import BnnlabError
from bnnlab.tracking import RunLock, Tracker, checkpoint_dir

__all__ = ["StepResult", "run_steps", "datamodule_for", "quiet_lightning", "RunInterrupted", "config_hash",
           "find_resumable"]

RESUMABLE = ("RUNNING", "KILLED")
_DDP_ENV = "BNNLAB_DDP_CONTEXT"


class RunInterrupted(BnnlabError, KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; the run is KILLED and can be resumed.

    Both a :class:`BnnlabError` (the CLI prints one line) and a ``KeyboardInterrupt``.
    ``exit_code`` is 130 for SIGINT and 143 for SIGTERM (128 + signal number).
    """

    exit_code = 130


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


def datamodule_for(cfg: StepConfig):
    """The data module of a step, checked (a missing or corrupt dataset raises at once)."""
    from bnnlab.data import create_datamodule

    d = cfg.data
    dm = create_datamodule(
        d.name, data_dir=d.data_dir, batch_size=d.batch_size, seed=cfg.seed,
        val_fraction=d.val_fraction, download=d.download, augment=d.augment,
        num_workers=d.num_workers, image_size=d.image_size, train_limit=d.train_limit,
        val_limit=d.val_limit, normalize=d.normalize, **d.options)
    dm.check()
    return dm


def _trainer_kwargs(cfg: StepConfig) -> dict[str, Any]:
    t = cfg.trainer
    kw: dict[str, Any] = dict(max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices,
                              strategy=t.strategy, num_nodes=t.num_nodes, precision=t.precision,
                              deterministic=t.deterministic)
    if t.limit_train_batches is not None:
        kw["limit_train_batches"] = t.limit_train_batches
    if t.limit_val_batches is not None:
        kw["limit_val_batches"] = t.limit_val_batches
    return kw


def _check_trainer_options(cfg: StepConfig) -> None:
    """Build (not run) a Trainer so bad accelerator/devices/strategy fail before the store."""
    import lightning as L

    try:
        L.Trainer(**_trainer_kwargs(cfg), logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False)
    except Exception as err:  # noqa: BLE001 -- Lightning's MisconfigurationException, ValueError, ...
        t = cfg.trainer
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BnnlabError(f"step '{cfg.name}': trainer options accelerator={t.accelerator} devices={t.devices} "
                          f"strategy={t.strategy} num_nodes={t.num_nodes} precision={t.precision}: "
                          f"{first[:300]}") from None


def _trainer(cfg: StepConfig, ckpt_cb, label: str, extra_callbacks):
    import lightning as L

    from bnnlab.callbacks import BinaryWeightDump, EpochSeed, progress_callback

    callbacks = [EpochSeed(cfg.seed), progress_callback(label), *extra_callbacks]
    if ckpt_cb.fault is not None:
        callbacks.append(ckpt_cb.fault)
    if os.environ.get("BNNLAB_DUMP_BINARY_WEIGHTS"):
        callbacks.append(BinaryWeightDump(os.environ["BNNLAB_DUMP_BINARY_WEIGHTS"]))
    return L.Trainer(
        **_trainer_kwargs(cfg), logger=False, callbacks=[ckpt_cb, *callbacks],
        enable_model_summary=False, num_sanity_val_steps=0, enable_progress_bar=_tty(), log_every_n_steps=1,
        enable_checkpointing=True, default_root_dir=ckpt_cb.dirpath)


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


def config_hash(steps: list[StepConfig]) -> str:
    """A short hash of a plan's configs, without fields that do not change the result
    (devices, strategy, nodes, accelerator, CPU threads, data location, loader workers)."""
    items = []
    for cfg in steps:
        d = cfg.model_dump(by_alias=True)
        for key in ("devices", "strategy", "num_nodes", "accelerator", "num_threads"):
            d["trainer"].pop(key, None)
        for key in ("data_dir", "download", "num_workers"):
            d["data"].pop(key, None)
        items.append(d)
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _is_rank_zero() -> bool:
    env = os.environ
    if any(env.get(k, "0") != "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")):
        return False
    return env.get("SLURM_PROCID", "0") == "0" or env.get("SLURM_NTASKS", "1") == "1"


def _parent_of(run) -> str | None:
    return run.data.tags.get("mlflow.parentRunId") or None


def find_resumable(tracker: Tracker, experiment: str, steps: list[StepConfig], resume: bool | str,
                   parent_run_id: str | None = None, check_lock: bool = True):
    """The MLflow row run that ``resume`` designates, or ``None`` (start a new run).

    ``resume`` is ``True``/``"auto"`` (newest unfinished run with the same config hash in
    ``experiment``, whose process is gone; ``None`` if there is none) or a run id.
    """
    h = config_hash(steps)
    if resume is True or resume == "auto":
        found = tracker.search_runs(
            experiment, f"tags.`bnnlab.config_hash` = '{h}' and tags.`bnnlab.level` = 'row'")
        for run in found:
            if (run.info.status in RESUMABLE and _parent_of(run) == parent_run_id
                    and not (check_lock and RunLock.held_elsewhere(run.info.run_id))):
                return run
        return None
    run_id = str(resume)
    try:
        run = tracker.get_run(run_id)
    except Exception:  # noqa: BLE001 -- MlflowException RESOURCE_DOES_NOT_EXIST and friends
        raise BnnlabError(f"--resume {run_id}: no such run in {tracker.uri}") from None
    if run.data.tags.get("bnnlab.level") == "step" and _parent_of(run):
        run = tracker.get_run(_parent_of(run))
    got = run.data.tags.get("bnnlab.config_hash")
    if got != h:
        raise BnnlabError(f"--resume {run_id}: that run was trained with a different config "
                          f"(config hash {got or 'none'}, these options give {h}); "
                          "resume needs the same options")
    if run.info.status not in RESUMABLE:
        raise BnnlabError(f"--resume {run_id}: run is {run.info.status}, nothing to resume "
                          "(only RUNNING or KILLED runs can be resumed)")
    if check_lock and RunLock.held_elsewhere(run.info.run_id):
        raise BnnlabError(f"--resume {run_id}: run is still being trained by another process")
    return run


def _step_runs(tracker: Tracker, proc) -> dict[str, Any]:
    """Step name -> its run under procedure ``proc`` (a FINISHED one wins, else the newest)."""
    exp = tracker.client.get_experiment(proc.info.experiment_id).name
    out: dict[str, Any] = {}
    for run in tracker.search_runs(exp, f"tags.`mlflow.parentRunId` = '{proc.info.run_id}'"):
        name = run.data.tags.get("bnnlab.step")
        if name is None or run.info.status not in (*RESUMABLE, "FINISHED"):
            continue
        if name not in out or (run.info.status == "FINISHED" and out[name].info.status != "FINISHED"):
            out[name] = run
    return out


class _Writes:
    """The tracker as rank 0 uses it; on other ranks every write is a no-op."""

    def __init__(self, tracker: Tracker, enabled: bool):
        self.tracker, self.enabled = tracker, enabled

    def __getattr__(self, name):
        fn = getattr(self.tracker, name)
        if self.enabled or name in ("get_run", "search_runs", "metric_steps", "uri", "client"):
            return fn
        return lambda *a, **k: None


_SIGNAL: dict[str, str | None] = {"name": None}


@contextlib.contextmanager
def _signal_handlers():
    """SIGINT and SIGTERM both become KeyboardInterrupt (remembering which one came)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _SIGNAL["name"] = signal.Signals(signum).name
        raise KeyboardInterrupt

    _SIGNAL["name"] = None
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _ddp_requested(cfg: StepConfig) -> bool:
    t = cfg.trainer
    return t.num_nodes > 1 or str(t.devices) not in ("1", "auto") or "ddp" in str(t.strategy)


def _reuse_finished(tracker: Tracker, run, name: str) -> StepResult:
    run_id = run.info.run_id
    ckpt = checkpoint_dir(run_id) / "last.ckpt"
    if not ckpt.is_file():
        try:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tracker.client.download_artifacts(run_id, "checkpoints/last.ckpt", str(ckpt.parent / "_dl"))
            (ckpt.parent / "_dl" / "checkpoints" / "last.ckpt").replace(ckpt)
        except Exception:  # noqa: BLE001
            raise BnnlabError(f"step '{name}' (run {run_id}) finished but its checkpoint {ckpt} is gone "
                              "and could not be downloaded") from None
    m = run.data.metrics
    return StepResult(name, run_id, "FINISHED", dict(m), ckpt, float(m.get("time/total_s", 0.0)))


def run_steps(steps: list[StepConfig], *, tracker: Tracker, experiment: str, run_name: str,
              tags: dict[str, Any] | None = None, parent_run_id: str | None = None,
              extra_callbacks: list | None = None, resume: bool | str | None = None) -> list[StepResult]:
    """Train ``steps`` in order; return one :class:`StepResult` per step.

    With several steps a procedure run is created (under ``parent_run_id`` if given) and
    every step is a run nested under it; a single step is a run of its own. The run that
    stands for the whole row (the procedure, or the single step) is tagged
    ``bnnlab.level=row`` and carries the summary metrics (``final/val_top1``,
    ``best/val_top1``, ``mean/bop_flip_ratio``, ``mean/epoch_s``, ``epochs``,
    ``time/total_s``); nested steps are tagged ``bnnlab.level=step``.

    ``resume``: ``None``/``False`` starts new runs; ``True``/``"auto"`` continues the newest
    unfinished run of the same config (or starts one); a run id continues that run. See
    the module docstring for what is restored and how metrics stay unduplicated.
    Raises :class:`RunInterrupted` on Ctrl-C/SIGTERM and ``NonFiniteLossError`` on NaN loss.
    """
    quiet_lightning()
    tags = dict(tags or {})
    # check every step's data and the trainer options before anything reaches the store
    checked = [datamodule_for(cfg) for cfg in steps]  # reused below: each dataset is checked once
    _check_trainer_options(steps[0])
    plan_hash = config_hash(steps)
    ctx = json.loads(os.environ[_DDP_ENV]) if (_DDP_ENV in os.environ and not _is_rank_zero()) else None
    rank0 = _is_rank_zero()
    store = _Writes(tracker, rank0)
    multi = len(steps) > 1
    with _signal_handlers():
        prior_row = None
        if ctx is None and resume:
            # ranks > 0 started by torchrun/srun look up the same run read-only (rank 0 may
            # already hold its lock on this node)
            prior_row = find_resumable(tracker, experiment, steps, resume, parent_run_id, check_lock=rank0)
        prior_steps: dict[str, Any] = {}
        proc_id = parent_run_id
        proc_lock = None
        if multi:
            if ctx is not None:
                proc_id = ctx.get("proc")
            elif prior_row is not None:
                proc_id = prior_row.info.run_id
                prior_steps = _step_runs(tracker, prior_row)
                store.set_status(proc_id, "RUNNING")
                store.delete_tag(proc_id, "bnnlab.failure")
            else:
                proc_id = store.start_run(
                    experiment, run_name, {**tags, "bnnlab.kind": "procedure", "bnnlab.level": "row",
                                           "bnnlab.config_hash": plan_hash,
                                           "bnnlab.steps": ",".join(s.name for s in steps)}, parent_run_id)
            if rank0 and proc_id:
                proc_lock = RunLock(proc_id)
                proc_lock.acquire()
        elif prior_row is not None:
            prior_steps = {steps[0].name: prior_row}
        done: dict[str, StepResult] = {}
        prev: StepResult | None = None
        results: list[StepResult] = []
        try:
            for i, raw in enumerate(steps):
                prior = prior_steps.get(raw.name)
                if ctx is not None and ctx.get("steps", {}).get(raw.name, {}).get("finished"):
                    info = ctx["steps"][raw.name]
                    res = StepResult(raw.name, info["run_id"], "FINISHED", {}, Path(info["checkpoint"]), 0.0)
                elif prior is not None and prior.info.status == "FINISHED":
                    res = _reuse_finished(tracker, prior, raw.name)
                else:
                    cfg = _resolve_refs(raw, done, prev)
                    res = _run_one(cfg, checked[i], i, len(steps), store, experiment, run_name, tags, proc_id,
                                   extra_callbacks or [], prior, plan_hash, ctx, prior_steps, steps)
                results.append(res)
                done[raw.name] = prev = res
            if multi:
                total = {**results[-1].metrics, "time/total_s": sum(r.wall_s for r in results),
                         "epochs": sum(r.metrics.get("epochs", 0.0) for r in results)}
                store.log_metrics(proc_id, total)
                store.end_run(proc_id, "FINISHED")
        except BaseException as err:
            if multi and proc_id:
                status = "KILLED" if isinstance(err, KeyboardInterrupt | SystemExit) else "FAILED"
                store.end_run(proc_id, status)
            raise
        finally:
            if proc_lock is not None:
                proc_lock.release()
    return results


def _ddp_context(proc_id, steps, prior_steps, name, run_id, ckpt) -> str:
    info: dict[str, Any] = {"proc": proc_id, "steps": {}}
    for s in steps:
        run = prior_steps.get(s.name)
        if run is not None and run.info.status == "FINISHED":
            info["steps"][s.name] = {"run_id": run.info.run_id, "finished": True,
                                     "checkpoint": str(checkpoint_dir(run.info.run_id) / "last.ckpt")}
    info["steps"][name] = {"run_id": run_id, "ckpt": ckpt}
    return json.dumps(info)


def _child_run_id(tracker: Tracker, ctx: dict, name: str) -> tuple[str, str | None]:
    """On a rank > 0: the run id (and resume checkpoint) rank 0 uses for step ``name``."""
    info = ctx.get("steps", {}).get(name)
    if info:
        return info["run_id"], info.get("ckpt")
    proc = ctx.get("proc")
    deadline = time.time() + 300
    while proc and time.time() < deadline:  # a later step of a procedure: rank 0 creates it now
        run = tracker.get_run(proc)
        exp = tracker.client.get_experiment(run.info.experiment_id).name
        for r in tracker.search_runs(exp, f"tags.`mlflow.parentRunId` = '{proc}' and tags.`bnnlab.step` = '{name}'"):
            if r.info.status == "RUNNING":
                return r.info.run_id, None
        time.sleep(0.5)
    return f"rank-{os.environ.get('LOCAL_RANK', '?')}-{name}", None


def _run_one(cfg, dm, i, n, store, experiment, run_name, tags, parent_id, extra_callbacks, prior, plan_hash,
             ctx, prior_steps, steps):
    import lightning as L

    from bnnlab.callbacks import EpochCheckpoint, FaultInjector
    from bnnlab.training import BnnModule, NonFiniteLossError

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.num_threads:
        import torch

        torch.set_num_threads(cfg.trainer.num_threads)
    info = dict(num_classes=dm.num_classes, in_channels=dm.in_channels, input_size=dm.input_size,
                train_size=dm.train_size)
    module = BnnModule(cfg.model_dump(by_alias=True), info)  # may raise on bad names/checkpoints
    module.configure_optimizers()  # bop without binary weights etc.: fail before the store
    name = run_name if n == 1 else f"{run_name}/{cfg.name}"
    step_hash = config_hash([cfg])
    step_tags = {**tags, "bnnlab.kind": "step", "bnnlab.level": "row" if n == 1 else "step",
                 "bnnlab.step": cfg.name, "bnnlab.step_index": i,
                 "bnnlab.model": cfg.model.name, "bnnlab.optimizer": cfg.optim.name,
                 "bnnlab.seed": cfg.seed, "bnnlab.step_hash": step_hash}
    if n == 1:
        step_tags["bnnlab.config_hash"] = plan_hash
    ckpt_path: str | None = None
    resumed = False
    if ctx is not None:
        run_id, ckpt_path = _child_run_id(store.tracker, ctx, cfg.name)
    elif prior is not None:
        run_id = prior.info.run_id
        last = checkpoint_dir(run_id) / "last.ckpt"
        ckpt_path = str(last) if last.is_file() else None
        resumed = True
    else:  # on a rank > 0 without context (torchrun/srun) nothing is created: a placeholder id
        run_id = (store.start_run(experiment, name, step_tags, parent_id)
                  or f"rank-{os.environ.get('RANK', os.environ.get('SLURM_PROCID', '?'))}-{cfg.name}")
    lock = RunLock(run_id) if ctx is None and store.enabled else None
    if lock is not None and not lock.acquire():
        raise BnnlabError(f"run {run_id} is being trained by another process")
    t0 = time.perf_counter()
    fault = FaultInjector(os.environ["BNNLAB_FAULT"]) if os.environ.get("BNNLAB_FAULT") else None
    ckpt_cb = None
    set_env = False
    try:
        if resumed:
            store.set_status(run_id, "RUNNING")
            store.delete_tag(run_id, "bnnlab.failure")
            count = int(prior.data.tags.get("bnnlab.resumes", "0")) + 1
            store.set_tags(run_id, {"bnnlab.resumes": count})
            print(f"[{name}] resuming run {run_id} "
                  + (f"from {ckpt_path}" if ckpt_path else "from the start (no checkpoint yet)"), flush=True)
        store.log_params(run_id, {**flatten(cfg.model_dump(by_alias=True)), **{
            f"data_info.{k}": v for k, v in info.items()}})
        if not resumed:
            store.log_text(run_id, yaml.safe_dump(cfg.model_dump(by_alias=True), sort_keys=False),
                           "config.yaml")

        def sink(epoch: int, metrics: dict[str, float]) -> None:
            store.log_metrics(run_id, metrics, step=epoch)

        def backfill(epochs: list[dict[str, float]]) -> None:
            have: dict[str, set[int]] = {}
            for e in epochs:
                missing = {}
                for k, v in e.items():
                    if k == "epoch":
                        continue
                    if k not in have:
                        have[k] = store.metric_steps(run_id, k)
                    if int(e["epoch"]) not in have[k]:
                        missing[k] = v
                if missing:
                    store.log_metrics(run_id, missing, step=int(e["epoch"]))

        ckpt_cb = EpochCheckpoint(str(checkpoint_dir(run_id)), sink=sink, backfill=backfill, fault=fault)
        trainer = _trainer(cfg, ckpt_cb, name, extra_callbacks)
        if ctx is None and store.enabled and _ddp_requested(cfg):
            os.environ[_DDP_ENV] = _ddp_context(parent_id, steps, prior_steps, cfg.name, run_id, ckpt_path)
            set_env = True
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        if trainer.interrupted:
            raise KeyboardInterrupt
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and ctx is not None:
            raise
        sig = _SIGNAL["name"] or ("SIGTERM" if type(err).__name__ == "SIGTERMException" else "SIGINT")
        store.set_tags(run_id, {"bnnlab.failure": f"interrupted by {sig}"})
        store.end_run(run_id, "KILLED")
        where = _last_good(ckpt_cb, run_id)
        exc = RunInterrupted(f"interrupted by {sig}: run {run_id} marked KILLED; {where}; "
                             f"continue it with --resume {run_id}")
        exc.exit_code = 143 if sig == "SIGTERM" else 130
        raise exc from None
    except NonFiniteLossError as err:
        msg = f"{err}; run {run_id} marked FAILED; {_last_good(ckpt_cb, run_id)}"
        store.set_tags(run_id, {"bnnlab.failure": f"NonFiniteLossError: {err}"[:4000]})
        store.end_run(run_id, "FAILED")
        raise NonFiniteLossError(msg) from None
    except BaseException as err:
        store.set_tags(run_id, {"bnnlab.failure": f"{type(err).__name__}: {err}"[:4000]})
        store.end_run(run_id, "FAILED")
        raise
    finally:
        if lock is not None:
            lock.release()
        if set_env:
            os.environ.pop(_DDP_ENV, None)
    wall = time.perf_counter() - t0
    ckpt = checkpoint_dir(run_id) / "last.ckpt"
    metrics = _summary(ckpt_cb)
    # a resumed run: add the epochs trained before the interruption
    metrics["time/total_s"] = wall + sum(e.get("time/epoch_s", 0.0) for e in ckpt_cb.restored)
    store.log_metrics(run_id, metrics, step=int(metrics.get("epochs", 1)))
    if ckpt.is_file():
        store.log_artifact(run_id, ckpt, "checkpoints")
    store.end_run(run_id, "FINISHED")
    return StepResult(cfg.name, run_id, "FINISHED", metrics, ckpt, wall)


def _last_good(ckpt_cb, run_id: str) -> str:
    last = checkpoint_dir(run_id) / "last.ckpt"
    if last.is_file() and ckpt_cb is not None and ckpt_cb.epochs:
        return f"last good checkpoint {last} (after epoch {int(ckpt_cb.epochs[-1]['epoch']) + 1})"
    if last.is_file():
        return f"last good checkpoint {last}"
    return "no checkpoint yet (it died in the first epoch)"
