"""``bnnlab report``: MLflow runs -> Markdown tables + PNG curves under results/."""

from __future__ import annotations

from pathlib import Path

import typer

from bnnlab.commands._common import console, handle_errors, print_json


@handle_errors
def report(
    recipe: str = typer.Option(None, "--recipe", help="Only this recipe (default: every recipe with runs)."),
    scale: str = typer.Option(None, "--scale", help="Only this scale: paper, mini, smoke (default: every scale "
                              "present, one file each)."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Folder for the Markdown and PNG files."),
    include_compare: bool = typer.Option(True, "--compare/--no-compare",
                                         help="Include `bnnlab compare` invocations."),
    invocation: str = typer.Option(None, "--invocation", help="Report this invocation run (any status) instead "
                                   "of the latest finished one."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default: sqlite in ./bnnlab-runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Write one Markdown report (+ PNG curves) per recipe and scale, one per comparison, and index.md.

    Uses the latest FINISHED invocation per (recipe, scale) and per comparison; every number
    comes from MLflow. Rerunning on the same runs gives byte-identical files.
    """
    from bnnlab.report import write_reports
    from bnnlab.tracking import Tracker

    tracker = Tracker(tracking_uri)
    paths = write_reports(out=out, recipe=recipe, scale=scale, include_compare=include_compare,
                          invocation=invocation, client=tracker.client)
    if as_json:
        print_json({"tracking_uri": tracker.uri, "files": [str(p) for p in paths]})
        return
    c = console()
    for p in paths:
        c.print(str(p))
    c.print(f"{sum(p.suffix == '.md' for p in paths)} Markdown file(s) from {tracker.uri}")
