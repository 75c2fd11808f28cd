"""Lightning callbacks: plain-line progress for non-terminals, per-epoch checkpoints and metric logging."""

from __future__ import annotations

import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

_SHOW = ("train/loss", "train/top1", "val/loss", "val/top1", "bop/flip_ratio")


def _fmt(metrics: dict) -> str:
    parts = []
    for k in _SHOW:
        if k in metrics:
            v = float(metrics[k])
            parts.append(f"{k} {v:.4f}" if "flip" not in k else f"{k} {v:.2e}")
    return "  ".join(parts)


class PlainProgress(L.Callback):
    """One line per epoch on stdout; for logs, CI and pipes where a live bar is noise."""

    def __init__(self, label: str = ""):
        self.label = label
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        m = trainer.callback_metrics
        label = f"[{self.label}] " if self.label else ""
        print(f"{label}epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {_fmt(m)}  "
              f"({time.perf_counter() - self._t0:.1f}s)", flush=True)


def progress_callback(label: str = "") -> L.Callback:
    """A rich progress bar on a terminal, plain lines otherwise."""
    if sys.stdout.isatty():
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar(leave=True)
    return PlainProgress(label)


# --------------------------------------------------------------------------- reliability


def _scalar_metrics(trainer) -> dict[str, float]:
    out = {}
    for k, v in trainer.callback_metrics.items():
        if getattr(v, "numel", lambda: 1)() == 1:
            out[k] = float(v)
    return out


class EpochSeed(L.Callback):
    """Reseeds torch, numpy and ``random`` at every epoch start from ``(seed, epoch, rank)``.

    Together with the ``(seed, epoch)``-seeded train sampler this makes epoch *k* a pure
    function of the state at the end of epoch *k-1*: a run resumed from an epoch-boundary
    checkpoint draws exactly the random numbers (augmentation, CutMix, dropout) that the
    uninterrupted run drew. (Exact for ``num_workers=0``; worker processes keep their own
    RNG streams.)
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer, pl_module):
        import random

        import numpy as np
        import torch

        ss = np.random.SeedSequence([self.seed & 0xFFFFFFFF, trainer.current_epoch, trainer.global_rank])
        a, b = (int(x) for x in ss.generate_state(2))
        torch.manual_seed(a << 32 | b)
        np.random.seed(a)
        random.seed(b)


class EpochCheckpoint(ModelCheckpoint):
    """Saves ``last.ckpt`` at every epoch end, atomically, THEN logs that epoch's metrics.

    The order is the point: the metrics of epoch *k* reach MLflow only after checkpoint *k*
    is on disk, so a run killed at any moment and resumed from its last checkpoint never
    logs an epoch twice. The per-epoch metrics are also stored in the checkpoint
    (``epochs``); a resumed run back-fills any epoch whose metrics were lost between the
    save and the log (a kill in that window), key by key, so the series has no gap either.

    ``sink(epoch, metrics)`` writes one epoch's metrics (rank 0 only); ``backfill(epochs)``
    is called once at train start on a resumed run.
    """

    def __init__(self, dirpath: str, sink=None, backfill=None, fault=None):
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, every_n_epochs=1,
                         save_on_train_epoch_end=True)
        self.sink, self.backfill, self.fault = sink, backfill, fault
        self.epochs: list[dict[str, float]] = []
        self.restored: list[dict[str, float]] = []  # epochs read from a resumed checkpoint

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        if self.epochs and self.backfill is not None and trainer.is_global_zero:
            self.backfill(list(self.epochs))

    def on_train_epoch_end(self, trainer, pl_module):
        m = _scalar_metrics(trainer)
        m["epoch"] = trainer.current_epoch
        self.epochs = [e for e in self.epochs if e["epoch"] < m["epoch"]] + [m]
        # Lightning 2.6 writes last.ckpt at epoch end only when a top-k checkpoint was also
        # written (save_top_k=0 would give no per-epoch checkpoint at all): save it directly.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))  # rank 0 writes
        if self.fault is not None:
            self.fault.after_checkpoint(trainer)
        if self.sink is not None and trainer.is_global_zero:
            self.sink(int(m["epoch"]), {k: v for k, v in m.items() if k != "epoch"})

    def on_exception(self, trainer, pl_module, exception):
        """Ctrl-C / SIGTERM: also keep the weights of the moment in ``interrupted.ckpt``
        (single process only: a save under DDP would wait on ranks that may be gone)."""
        if isinstance(exception, KeyboardInterrupt | SystemExit) and trainer.world_size == 1:
            import os

            try:
                path = os.path.join(self.dirpath, "interrupted.ckpt")
                trainer.save_checkpoint(f"{path}.tmp")
                os.replace(f"{path}.tmp", path)
            except Exception:  # noqa: BLE001 -- best effort; last.ckpt is what resume uses
                pass

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        import os

        tmp = f"{filepath}.tmp"
        super()._save_checkpoint(trainer, tmp)
        if trainer.is_global_zero and os.path.exists(tmp):
            os.replace(tmp, filepath)  # a kill mid-write leaves the previous last.ckpt intact
        self.last_model_path = self._last_checkpoint_saved = filepath
        trainer.strategy.barrier("bnnlab.EpochCheckpoint")

    def state_dict(self):
        return {**super().state_dict(), "bnnlab_epochs": self.epochs}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        self.epochs = list(state_dict.pop("bnnlab_epochs", []))
        self.restored = list(self.epochs)
        super().load_state_dict(state_dict)


class FaultInjector(L.Callback):
    """Test hook: ``BNNLAB_FAULT=ACTION@EPOCH:BATCH`` (several separated by ``,``).

    ACTION is ``sigkill``, ``sigint``, ``sigterm`` (sent to this process) or ``nan`` (makes
    the loss NaN); BATCH is a batch index, or ``end`` for "right after the epoch's
    checkpoint was saved, before its metrics are logged". Only for tests and drills.
    """

    def __init__(self, spec: str):
        self.faults = []
        for item in filter(None, (s.strip() for s in spec.split(","))):
            action, _, where = item.partition("@")
            epoch, _, batch = where.partition(":")
            self.faults.append((action, int(epoch), batch))

    def _fire(self, action: str, trainer, pl_module) -> None:
        import os
        import signal

        if trainer.global_rank != 0:
            return
        if action == "nan":
            import torch

            with torch.no_grad():
                list(pl_module.parameters())[-1].fill_(float("nan"))  # the head: real-valued
            return
        sig = {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[action]
        print(f"[fault] {action} at epoch {trainer.current_epoch}", flush=True)
        os.kill(os.getpid(), sig)
        import time

        time.sleep(0.5)  # let the handler run here, not somewhere random

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for action, epoch, where in self.faults:
            if where != "end" and epoch == trainer.current_epoch and int(where) == batch_idx:
                self._fire(action, trainer, pl_module)

    def after_checkpoint(self, trainer) -> None:
        for action, epoch, where in self.faults:
            if where == "end" and epoch == trainer.current_epoch:
                self._fire(action, trainer, None)


class BinaryWeightDump(L.Callback):
    """Test hook: with ``BNNLAB_DUMP_BINARY_WEIGHTS=DIR`` every rank saves sign(binary
    weights) to ``DIR/rank<R>.pt`` at train end (DDP consistency check)."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        from pathlib import Path

        import torch

        from bnnlab.binary import binary_weights

        Path(self.folder).mkdir(parents=True, exist_ok=True)
        state = {n: torch.where(p.detach() >= 0, 1, -1).to(torch.int8).cpu()
                 for n, p in binary_weights(pl_module.model)}
        torch.save(state, Path(self.folder) / f"rank{trainer.global_rank}.pt")
