"""Shared CLI plumbing: one-line errors (exit 2), console, option helpers."""

from __future__ import annotations

import functools
import json
import sys
from types import SimpleNamespace
from typing import Any

import typer

state = SimpleNamespace(debug=False)


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # pipes and logs get wide tables instead of rich's 80-column default
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def handle_errors(fn):
    """Turn :class:`~bnnlab.errors.BnnlabError` into ``error: ...`` on stderr and exit 2.

    With ``bnnlab --debug`` the traceback is shown instead.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from bnnlab.errors import BnnlabError

        try:
            return fn(*args, **kwargs)
        except BnnlabError as err:
            if state.debug:
                raise
            msg = " ".join(str(err).split("\n"))
            print(f"error: {msg}", file=sys.stderr, flush=True)
            raise typer.Exit(getattr(err, "exit_code", 2)) from None

    return wrapper


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["optim.lr=0.01", ...]`` -> ``{"optim.lr": "0.01"}``; a bad item is a BnnlabError."""
    from bnnlab.errors import BnnlabError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BnnlabError(f"--set expects KEY=VALUE, got '{item}'")
        out[key.strip()] = value
    return out


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def command_line(ctx, *arguments: str) -> str:
    """The exact ``bnnlab ...`` command line of this invocation, for provenance tags.

    From a shell, ``sys.argv`` is it. In-process (tests, the Python API) ``sys.argv`` is
    someone else's, so the line is rebuilt from the parsed options: ``arguments`` are the
    positional values, every option that differs from its default follows.
    """
    import shlex
    from pathlib import Path

    name = ctx.info_name
    args = sys.argv[1:]
    if name in args and Path(sys.argv[0]).name in ("bnnlab", "__main__.py", "cli.py"):
        return shlex.join(["bnnlab", *args])
    out = ["bnnlab", name, *map(str, arguments)]
    for param in ctx.command.params:
        if getattr(param, "param_type_name", "") != "option" or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if value is None or value is False or value == param.default or value in ((), []):
            continue
        flag = max(param.opts, key=len)
        if value is True:
            out.append(flag)
        elif isinstance(value, list | tuple):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return shlex.join(out)
