"""``bnnlab bench``: speed ratios that matter for BNN training."""

from __future__ import annotations

import typer

from bnnlab.commands._common import handle_errors, print_json


@handle_errors
def bench(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="channels_last memory format."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes and few repeats (smoke test)."),
    quickstart: bool = typer.Option(False, "--quickstart", help="Also time `bnnlab reproduce quickstart`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown page (as results/bench.md)."),
) -> None:
    """Training-step ratios (binary/real, bnnlab/official-style), Bop vs Adam, start-up time."""
    import shlex
    import sys

    from bnnlab.bench import bench_markdown, print_bench, run_bench

    result = run_bench(device=device, precision=precision, channels_last=channels_last, quick=quick,
                       quickstart=quickstart)
    if as_json:
        print_json(result)
    elif markdown:
        typer.echo(bench_markdown(result, shlex.join(["bnnlab", *sys.argv[1:]]) if "bench" in sys.argv
                                  else "bnnlab bench"))
    else:
        print_bench(result)
