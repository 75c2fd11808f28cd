"""MLflow tracking: where runs are stored and how bnnlab talks to the store.

Default store: an embedded SQLite database ``./bnnlab-runs/mlflow.db`` with artifacts in
``./bnnlab-runs/artifacts`` and checkpoints in ``./bnnlab-runs/checkpoints/<run_id>``.
``BNNLAB_HOME`` moves that folder; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` point at
any other MLflow store (another SQLite file, PostgreSQL, or an ``http://`` server).
A ``./mlruns`` file store is never used (current MLflow refuses it).
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from bnnlab import __version__
from bnnlab.errors import BnnlabError

DEFAULT_HOME = "bnnlab-runs"


def home() -> Path:
    """The folder for the default store, artifacts and checkpoints."""
    return Path(os.environ.get("BNNLAB_HOME", DEFAULT_HOME)).resolve()


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("file:") or (("://" not in uri) and not uri.startswith("sqlite")):
            raise BnnlabError(
                f"tracking URI '{uri}' is a file store, which current MLflow refuses; "
                "use sqlite:///PATH.db or http://HOST:PORT")
        return uri
    return f"sqlite:///{home() / 'mlflow.db'}"


def checkpoint_dir(run_id: str) -> Path:
    return home() / "checkpoints" / run_id


def _artifact_location(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "artifacts").resolve().as_uri()
    return None  # a server decides its own artifact root


@lru_cache(maxsize=1)
def git_info() -> dict[str, str]:
    """Commit and dirty flag of the bnnlab checkout (empty strings outside git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "", "dirty": ""}
    return {"commit": commit, "dirty": "true" if dirty else "false"} if commit else {"commit": "", "dirty": ""}


def base_tags() -> dict[str, str]:
    g = git_info()
    return {"bnnlab.version": __version__, "git.commit": g["commit"], "git.dirty": g["dirty"]}


class Tracker:
    """A thin wrapper of :class:`mlflow.MlflowClient` bound to one store."""

    def __init__(self, uri: str | None = None):
        self.uri = resolve_tracking_uri(uri)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        try:  # creates / migrates the schema once, before any worker starts
            self.client.search_experiments(max_results=1)
        except Exception as err:  # noqa: BLE001 -- any failure here means an unusable store
            raise BnnlabError(f"cannot use tracking store {self.uri}: "
                              f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err

    def experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_location(self.uri))
        except Exception:  # noqa: BLE001 -- another process created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def start_run(self, experiment: str, run_name: str, tags: dict[str, Any] | None = None,
                  parent_run_id: str | None = None) -> str:
        all_tags = {**base_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 90):
            self.client.log_batch(run_id, params=items[i:i + 90])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)


def make_lightning_logger(tracker: Tracker, run_id: str):
    """A Lightning MLFlowLogger writing into an existing run, one step per epoch.

    bnnlab logs params itself and ends runs itself (so it can log the checkpoint first
    and set KILLED/FAILED precisely); the logger only writes metrics.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    class EpochMLFlowLogger(MLFlowLogger):
        def log_hyperparams(self, params):  # bnnlab logs the resolved config itself
            return None

        def log_metrics(self, metrics, step=None):
            metrics = dict(metrics)
            epoch = metrics.pop("epoch", None)
            super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)

        def finalize(self, status: str = "success") -> None:
            return None

    return EpochMLFlowLogger(tracking_uri=tracker.uri, run_id=run_id)
