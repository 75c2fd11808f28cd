"""nox sessions for bnnlab.

    nox -s tests    # fast offline suite (the README's test command)
    nox -s slow     # heavier end-to-end tests: kill/resume, concurrency, DDP, MLflow server
    nox -s lint     # ruff
    nox -s bench    # `bnnlab bench` (prints ratios; asserts nothing about speed)

Virtualenvs are reused (torch is large). ``BNNLAB_NOX_ENVDIR`` moves them out of the
checkout, so CI keeps one set across fresh clones.
"""

import os

import nox

nox.options.reuse_venv = "yes"
nox.options.envdir = os.environ.get("BNNLAB_NOX_ENVDIR", ".nox")
nox.options.sessions = ["lint", "tests"]

TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


def _install(session: nox.Session) -> None:
    session.install(*TORCH)
    session.install("-e", ".[dev]")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Fast offline test suite (about a few minutes on 2 cores)."""
    _install(session)
    session.run("pytest", "-q", "-m", "not slow", "--timeout=600", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    """Slow tests: SIGKILL/resume, 8 concurrent runs, 2-process DDP, a real MLflow server."""
    _install(session)
    session.run("pytest", "-q", "-m", "slow", "--timeout=1200", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "bnnlab", "tests", "noxfile.py")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks: prints timing ratios, never fails on speed."""
    _install(session)
    session.run("bnnlab", "bench", *session.posargs)
