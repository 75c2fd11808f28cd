"""The ``bnnlab`` command line: thin typer commands over the library.

Each command lives in ``bnnlab/commands/<name>.py`` and imports torch, Lightning or
MLflow only inside its body, so ``bnnlab --help`` answers at once.
"""

from __future__ import annotations

import typer

from bnnlab import __version__
from bnnlab.commands import bench, recipes_cmd, reproduce, runs, summary, train
from bnnlab.commands import compare as compare_cmd
from bnnlab.commands import report as report_cmd
from bnnlab.commands._common import state

app = typer.Typer(
    name="bnnlab",
    help="Train, reproduce and compare binary neural networks; track runs in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bnnlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    state.debug = debug


app.command("train", help="Train one model on one dataset and track the run in MLflow.")(train.train)
app.command("runs", help="List tracked runs as a table (--json for machines).")(runs.runs)
app.command("summary", help="Params, memory, BOPs/FLOPs/OPs of a model (all models if none given).")(
    summary.summary)
app.command("bench", help="Benchmark binary vs real steps, bnnlab vs official-style code, Bop vs Adam.")(
    bench.bench)


app.command("reproduce", help="Reproduce a paper's table from a recipe. Default --scale mini: a CPU proxy on "
            "the bundled digits (minutes; not comparable with the paper's numbers); --scale paper needs GPUs "
            "and the dataset (--data-dir).")(reproduce.reproduce)
app.add_typer(recipes_cmd.app, name="recipes", help="List the shipped recipes, or `show NAME`.")
app.command("compare", help="Compare methods: vary optimizers, activations, losses, ... over seeds.")(
    compare_cmd.compare)
app.command("report", help="Write Markdown + PNG reports of recipes and comparisons from MLflow runs.")(
    report_cmd.report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
