"""Lightning callbacks: plain-line progress for non-terminals, and per-epoch history."""

from __future__ import annotations

import sys
import time

import lightning as L

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


class History(L.Callback):
    """Keeps the per-epoch validation metrics of this process (for final/best summaries)."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        m = {k: float(v) for k, v in trainer.callback_metrics.items()
             if getattr(v, "numel", lambda: 1)() == 1}
        m["epoch"] = trainer.current_epoch
        self.epochs.append(m)

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict):
        self.epochs = list(state_dict.get("epochs", []))


def progress_callback(label: str = "") -> L.Callback:
    """A rich progress bar on a terminal, plain lines otherwise."""
    if sys.stdout.isatty():
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar(leave=True)
    return PlainProgress(label)
