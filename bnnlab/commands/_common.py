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

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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
