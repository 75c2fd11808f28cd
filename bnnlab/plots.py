"""Deterministic PNG curves for reports (matplotlib, Agg backend).

One figure per metric: for every row (or variant) the mean over seeds per epoch as a line
and the min-max range across seeds as a band. The files carry no timestamp or software
metadata, so the same data gives byte-identical PNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["aggregate", "plot_metric"]

#: PNG metadata written into every figure (fixed, so reruns are byte-identical).
PNG_METADATA = {"Software": None}


def aggregate(seeds: list[list[tuple[float, float]]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per x over seeds: ``(x, mean, min, max)`` of the points present (seeds may differ in length)."""
    by_x: dict[float, list[float]] = {}
    for series in seeds:
        for x, y in series:
            if y is None or (isinstance(y, float) and math.isnan(y)):
                continue
            by_x.setdefault(float(x), []).append(float(y))
    xs = sorted(by_x)
    mean = [sum(by_x[x]) / len(by_x[x]) for x in xs]
    lo = [min(by_x[x]) for x in xs]
    hi = [max(by_x[x]) for x in xs]
    return xs, mean, lo, hi


def plot_metric(curves: dict[str, list[list[tuple[float, float]]]], path: str | Path, *, title: str,
                ylabel: str, xlabel: str = "epoch", scale: float = 1.0,
                boundaries: list[float] | None = None) -> Path:
    """Write one PNG: a line (mean over seeds) and a band (min-max over seeds) per curve.

    ``curves`` maps a legend label to the per-seed series ``[(x, y), ...]``; ``scale``
    multiplies y (100 for percent); ``boundaries`` draws dotted vertical lines (step ends).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    n = max(len(curves), 1)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    with plt.rc_context({"svg.hashsalt": "bnnlab", "font.size": 9, "axes.titlesize": 10}):
        fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=100)
        try:
            for i, (label, seeds) in enumerate(curves.items()):
                xs, mean, lo, hi = aggregate(seeds)
                if not xs:
                    continue
                color = cmap(i % cmap.N)
                ys = [scale * v for v in mean]
                ax.plot(xs, ys, color=color, label=label, linewidth=1.5,
                        marker="o" if len(xs) <= 20 else None, markersize=3)
                if len(seeds) > 1:
                    ax.fill_between(xs, [scale * v for v in lo], [scale * v for v in hi], color=color,
                                    alpha=0.2, linewidth=0)
            for b in boundaries or []:
                ax.axvline(b, color="0.6", linestyle=":", linewidth=1)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            if curves:
                ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png", metadata=PNG_METADATA, bbox_inches="tight")
        finally:
            plt.close(fig)
    return path
