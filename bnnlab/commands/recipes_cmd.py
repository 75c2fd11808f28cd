"""``bnnlab recipes``: list the shipped recipes; ``bnnlab recipes show NAME`` prints one."""

from __future__ import annotations

import typer

from bnnlab.commands._common import console, handle_errors, print_json

app = typer.Typer(help="List the shipped recipes (paper tables) or show one with its rows and paper numbers.",
                  invoke_without_command=True, no_args_is_help=False)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context,
             as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    if ctx.invoked_subcommand is None:
        list_(as_json=as_json)


@app.command("list", help="List the shipped recipes: name, title, paper, rows, scales.")
@handle_errors
def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    from rich.table import Table

    from bnnlab.recipes import list_recipes

    recipes = list_recipes()
    if as_json:
        print_json([r.summary() for r in recipes])
        return
    t = Table(title="bnnlab recipes (`bnnlab reproduce NAME`, default scale mini)")
    for col in ("name", "title", "paper", "rows", "scales"):
        t.add_column(col, overflow="fold")
    for r in recipes:
        paper = "-" if r.paper is None else f"{r.paper.title} ({r.paper.venue or r.paper.year}" + (
            f", arXiv:{r.paper.arxiv})" if r.paper.arxiv else ")")
        scales = ", ".join(f"{s}({spec.seeds} seed{'s' if spec.seeds > 1 else ''})" for s, spec in r.scales.items())
        t.add_row(r.name, r.title, paper, str(len(r.rows)), scales)
    console().print(t)


@app.command("show", help="Show one recipe: paper, table, rows with paper numbers and sources, scales.")
@handle_errors
def show(name: str = typer.Argument(..., help="A shipped recipe name or a path to a recipe YAML."),
         as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    from rich.table import Table

    from bnnlab.recipes import load_recipe

    r = load_recipe(name)
    if as_json:
        print_json(r.summary())
        return
    c = console()
    c.print(f"[bold]{r.name}[/]: {r.title}")
    if r.paper is not None:
        p = r.paper
        c.print(f"paper: {p.title}" + (f" -- {p.authors}" if p.authors else "") + f", {p.venue or ''} {p.year}"
                + (f", arXiv:{p.arxiv}" if p.arxiv else "") + (f", {p.url}" if p.url else ""))
    if r.table:
        c.print(f"mirrors: {r.table}")
    if r.follows:
        c.print(f"follows: {r.follows}")
    if r.dataset:
        c.print(f"dataset: {r.dataset}")
    if r.description:
        c.print(r.description.strip())
    if r.notes:
        c.print(f"notes: {r.notes.strip()}")
    t = Table(title=f"rows of {r.name} (steps: {', '.join(r.step_names())})", show_lines=True)
    for col in ("id", "label", "steps", "paper", "source", "notes"):
        t.add_column(col, overflow="fold")
    for row in r.rows:
        vals = row.paper.values()
        paper = ", ".join(f"{k} {'null' if v is None else v}" for k, v in vals.items()) or "-"
        t.add_row(row.id, row.label, ", ".join(r.row_steps(row, "paper")), paper, row.paper.source or "-",
                  (row.notes or "") + (f" {row.paper.notes}" if row.paper.notes else ""))
    c.print(t)
    for s, spec in r.scales.items():
        c.print(f"scale {s}: {spec.seeds} seed(s)" + (f" -- {spec.notes.strip()}" if spec.notes else ""))
    if r.targets:
        c.print(f"targets: {r.targets}")
    c.print(f"file: {r.source_file}")
