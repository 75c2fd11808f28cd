"""MLflow tracking: where runs are stored and how bnnlab talks to the store.

Default store: an embedded SQLite database ``./bnnlab-runs/mlflow.db`` with artifacts in
``./bnnlab-runs/artifacts`` and checkpoints in ``./bnnlab-runs/checkpoints/<run_id>``.
``BNNLAB_HOME`` moves that folder; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` point at
any other MLflow store (another SQLite file, PostgreSQL, or an ``http://`` server).
A ``./mlruns`` file store is never used (current MLflow refuses it).

Many processes may share one embedded SQLite store (eight ``bnnlab train`` at once, a
compare sweep): the schema is created/migrated under an exclusive ``fcntl`` lock on
``<db>.lock``, every SQLite connection gets a 60 s busy timeout, and every write retries
with jittered exponential backoff on "database is locked". An ``http(s)://`` URI is
probed with a plain 3-second TCP connect first, so an unreachable server fails at once
instead of after MLflow's HTTP retries.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
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


def _mkdir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BnnlabError(f"cannot create {what} {path}: {err.strerror or err}; "
                          "set BNNLAB_HOME to a writable folder") from None
    if not os.access(path, os.W_OK):
        raise BnnlabError(f"{what} {path} is not writable; set BNNLAB_HOME to a writable folder")


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive ``fcntl.flock`` on ``path`` (released when the process dies, too)."""
    import fcntl

    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RunLock:
    """Marks a run as being trained by this process: a non-blocking ``flock`` on
    ``checkpoints/<run_id>/.lock``. The OS drops it when the process dies (even on SIGKILL),
    so a RUNNING run whose lock is free was killed and may be resumed."""

    def __init__(self, run_id: str):
        self.path = checkpoint_dir(run_id) / ".lock"
        self._fh = None

    def acquire(self) -> bool:
        import fcntl

        _mkdir(self.path.parent, "checkpoint folder")
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @classmethod
    def held_elsewhere(cls, run_id: str) -> bool:
        lock = cls(run_id)
        if not lock.path.exists():
            return False
        import fcntl

        with open(lock.path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def _is_locked_error(err: BaseException) -> bool:
    text = str(err).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_locked(fn, *args, attempts: int = 40, **kwargs):
    """Call ``fn``; on SQLite "database is locked" retry with jittered backoff (~90 s max)."""
    delay = 0.05
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 -- only lock errors are retried
            if i == attempts - 1 or not _is_locked_error(err):
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


_BUSY_LISTENER = False


def _sqlite_busy_timeout(ms: int = 60_000) -> None:
    """Every SQLite connection of this process waits up to ``ms`` for a lock (not 5 s)."""
    global _BUSY_LISTENER
    if _BUSY_LISTENER:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
        import sqlite3

        if isinstance(dbapi_conn, sqlite3.Connection):
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(ms)}")
            cur.close()

    _BUSY_LISTENER = True


def _probe_http(uri: str, timeout: float = 3.0) -> None:
    """Fail fast (one line) when an http(s) tracking server does not answer."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(uri)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        raise BnnlabError(f"cannot reach tracking server {uri}: {err.strerror or err} "
                          f"(is `mlflow server` running on {u.hostname}:{port}?)") from None


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


@lru_cache(maxsize=1)
def env_tags() -> dict[str, str]:
    """Software versions and device of this process (``env.*`` tags for provenance)."""
    import platform
    from importlib import metadata

    def ver(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return ""

    out = {"env.python": platform.python_version(), "env.torch": ver("torch"),
           "env.lightning": ver("lightning"), "env.mlflow": ver("mlflow")}
    try:
        import torch

        if torch.cuda.is_available():
            out["env.device"] = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
        else:
            import os

            n = torch.get_num_threads()
            out["env.device"] = f"cpu ({platform.machine()}, {os.cpu_count()} cores, {n} thread{'s' if n != 1 else ''})"
    except Exception:  # noqa: BLE001 -- provenance is best effort
        out["env.device"] = "unknown"
    return out


def base_tags() -> dict[str, str]:
    g = git_info()
    return {"bnnlab.version": __version__, "git.commit": g["commit"], "git.dirty": g["dirty"], **env_tags()}


class Tracker:
    """A thin wrapper of :class:`mlflow.MlflowClient` bound to one store."""

    def __init__(self, uri: str | None = None):
        self.uri = resolve_tracking_uri(uri)
        # HTTP: a few retries for a flaky server during long runs; the probe below fails fast
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        lock: contextlib.AbstractContextManager = contextlib.nullcontext()
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///"):].split("?", 1)[0])
            _mkdir(db.parent, "tracking store folder")
            _sqlite_busy_timeout()
            lock = file_lock(db.parent / f"{db.name}.lock")
        elif self.uri.startswith(("http://", "https://")):
            _probe_http(self.uri)
        from mlflow import MlflowClient

        try:
            with lock:  # creates / migrates the schema once, even with many processes starting
                self.client = MlflowClient(tracking_uri=self.uri)
                retry_locked(self.client.search_experiments, max_results=1)
        except Exception as err:  # noqa: BLE001 -- any failure here means an unusable store
            first = str(err).splitlines()[0][:200] if str(err) else ""
            raise BnnlabError(f"cannot use tracking store {self.uri}: {type(err).__name__}: {first}") from None

    def experiment_id(self, name: str) -> str:
        exp = retry_locked(self.client.get_experiment_by_name, name)
        if exp is not None:
            return exp.experiment_id
        try:
            return retry_locked(self.client.create_experiment, name,
                                artifact_location=_artifact_location(self.uri))
        except Exception:  # noqa: BLE001 -- another process created it first
            exp = retry_locked(self.client.get_experiment_by_name, name)
            if exp is None:
                raise
            return exp.experiment_id

    def start_run(self, experiment: str, run_name: str, tags: dict[str, Any] | None = None,
                  parent_run_id: str | None = None) -> str:
        all_tags = {**base_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = retry_locked(self.client.create_run, self.experiment_id(experiment), run_name=run_name,
                           tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 90):
            retry_locked(self.client.log_batch, run_id, params=items[i:i + 90])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        retry_locked(self.client.log_batch, run_id,
                     metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        retry_locked(self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        retry_locked(self.client.set_terminated, run_id, status)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        retry_locked(self.client.log_artifact, run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        retry_locked(self.client.log_text, run_id, text, artifact_file)

    def get_run(self, run_id: str):
        return retry_locked(self.client.get_run, run_id)


    def set_status(self, run_id: str, status: str) -> None:
        """Reopen a run (``RUNNING``) when a resume continues it."""
        retry_locked(self.client.update_run, run_id, status=status)

    def delete_tag(self, run_id: str, key: str) -> None:
        with contextlib.suppress(Exception):
            retry_locked(self.client.delete_tag, run_id, key)

    def search_runs(self, experiment: str, filter_string: str = "", max_results: int = 1000):
        exp = retry_locked(self.client.get_experiment_by_name, experiment)
        if exp is None:
            return []
        return retry_locked(self.client.search_runs, [exp.experiment_id], filter_string=filter_string,
                            max_results=max_results, order_by=["attributes.start_time DESC"])

    def metric_steps(self, run_id: str, key: str) -> set[int]:
        return {m.step for m in retry_locked(self.client.get_metric_history, run_id, key)}
