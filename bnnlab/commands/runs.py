"""``bnnlab runs``: the tracked runs as a table."""

from __future__ import annotations

import typer

from bnnlab.commands._common import console, handle_errors, print_json

_COLS = [("run_id", "run"), ("experiment", "experiment"), ("tags.mlflow.runName", "name"),
         ("status", "status"), ("start_time", "started"), ("metrics.final/val_top1", "val top-1"),
         ("metrics.best/val_top1", "best"), ("metrics.time/total_s", "time s")]


@handle_errors
def runs(
    experiment: list[str] = typer.Option(None, "--experiment", "-x", help="Only these experiments."),
    limit: int = typer.Option(50, "--limit", "-n", help="Show at most this many runs (newest first)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default: sqlite in ./bnnlab-runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List tracked runs (newest first)."""
    from bnnlab.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exps = tracker.client.search_experiments()
    names = {e.experiment_id: e.name for e in exps}
    ids = [e.experiment_id for e in exps if not experiment or e.name in experiment]
    rows = []
    if ids:
        found = tracker.client.search_runs(ids, max_results=limit, order_by=["attributes.start_time DESC"])
        for r in found:
            rows.append({
                "run_id": r.info.run_id, "experiment": names.get(r.info.experiment_id, ""),
                "tags.mlflow.runName": r.data.tags.get("mlflow.runName", ""),
                "status": r.info.status,
                "start_time": _fmt_time(r.info.start_time),
                "metrics.final/val_top1": r.data.metrics.get("final/val_top1"),
                "metrics.best/val_top1": r.data.metrics.get("best/val_top1"),
                "metrics.time/total_s": r.data.metrics.get("time/total_s"),
                "parent": r.data.tags.get("mlflow.parentRunId", ""),
                "failure": r.data.tags.get("bnnlab.failure", ""),
                "resumes": int(r.data.tags.get("bnnlab.resumes", "0")),
            })
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"runs in {tracker.uri}")
    for _, label in _COLS:
        table.add_column(label, justify="right" if label in ("val top-1", "best", "time s") else "left")
    for r in rows:
        table.add_row(*[_cell(r[k], k) for k, _ in _COLS])
    console().print(table if rows else "no runs yet: try `bnnlab train`")


def _fmt_time(ms: int | None) -> str:
    import datetime as dt

    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cell(v, key: str) -> str:
    if v is None:
        return "-"
    if key == "run_id":
        return v[:8]
    if isinstance(v, float):
        return f"{v:.1f}" if key.endswith("total_s") else f"{v:.4f}"
    return str(v)
