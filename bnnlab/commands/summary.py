"""``bnnlab summary``: what a model costs in the units BNN papers use."""

from __future__ import annotations

import typer

from bnnlab.commands._common import console, handle_errors, parse_sets, print_json


@handle_errors
def summary(
    model: str = typer.Argument(None, help="Model name; omit to list every registered model."),
    input_size: int = typer.Option(None, "--input-size", help="Input side in pixels (default: the paper's)."),
    proxy: bool = typer.Option(False, "--proxy", help="Summarize the small CPU proxy variant."),
    per_layer: bool = typer.Option(True, "--layers/--no-layers", help="Show the per-layer table."),
    sets: list[str] = typer.Option(None, "--set", "-s", help="Model option, e.g. --set width=0.25."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table."),
) -> None:
    """Binary/real params, memory (Mbit), BOPs, FLOPs and OPs = BOPs/64 + FLOPs, per layer and total."""
    from bnnlab.complexity import list_summary, summarize
    from bnnlab.config import parse_value
    from bnnlab.models import model_info

    if model is None:
        df = list_summary()
        if as_json:
            print_json(df.to_dict(orient="records"))
        elif markdown:
            typer.echo(df.to_markdown(index=False, floatfmt=".3g"))
        else:
            from rich.table import Table

            t = Table(title="registered models (paper input size)")
            for col in df.columns:
                t.add_column(str(col))
            for row in df.itertuples(index=False):
                t.add_row(*[_fmt(v) for v in row])
            console().print(t)
        return
    kwargs = {k: parse_value(v) for k, v in parse_sets(sets).items()}
    if proxy:
        kwargs = {**model_info(model).proxy, **kwargs}
    if input_size is not None:
        kwargs["input_size"] = input_size
    s = summarize(model, **kwargs)
    if as_json:
        print_json(s.to_dict())
    elif markdown:
        typer.echo(s.to_markdown(layers=per_layer))
    else:
        console().print(s.rich_table(layers=per_layer))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
