"""User-facing errors.

Every mistake a user can make (a bad name, a bad value, missing data, a corrupt file)
raises :class:`BnnlabError`. The CLI turns it into a one-line message and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BnnlabError(Exception):
    """An error caused by the user's input, reported as one line (exit code 2)."""

    exit_code = 2


class UnknownNameError(BnnlabError, KeyError):
    """An unknown registry name, with a "did you mean" hint and the known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class MissingDataError(BnnlabError):
    """A dataset that is not where bnnlab looked for it."""
