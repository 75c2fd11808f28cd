"""Helpers for the reliability tests: run bnnlab in a subprocess, read the SQLite store."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# small, fast runs: 6 batches of 64 digits per epoch
FAST = ["--set", "trainer.limit_train_batches=6", "--set", "trainer.limit_val_batches=3"]


def bnnlab_cmd() -> list[str]:
    return [sys.executable, "-m", "bnnlab"]


def run_cli(args, env=None, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if env is None or "MLFLOW_TRACKING_URI" not in env else None
    return subprocess.run([*bnnlab_cmd(), *map(str, args)], env=full_env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def store_path() -> Path:
    return Path(os.environ["BNNLAB_HOME"]) / "mlflow.db"


def count_runs(db: Path | None = None) -> int:
    db = db or store_path()
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:  # no schema yet
            return 0


@pytest.fixture
def client():
    from mlflow import MlflowClient

    from bnnlab.tracking import resolve_tracking_uri

    return MlflowClient(resolve_tracking_uri())


def all_runs(client):
    exps = client.search_experiments()
    return client.search_runs([e.experiment_id for e in exps]) if exps else []


def series(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory):
    """One migrated, empty SQLite store per session (creating the schema takes seconds)."""
    from bnnlab.tracking import Tracker

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    Tracker(f"sqlite:///{path}")
    return path


@pytest.fixture(autouse=True)
def _fresh_store_from_template(_isolated_store, _template_store):
    import shutil

    home = Path(os.environ["BNNLAB_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(_template_store, home / "mlflow.db")
