import pytest


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Every test gets its own bnnlab home (SQLite store, artifacts, checkpoints)."""
    monkeypatch.setenv("BNNLAB_HOME", str(tmp_path / "bnnlab-home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    yield


@pytest.fixture
def cli():
    """Invoke the bnnlab CLI in-process: cli(["train", "--epochs", "1"]) -> Result."""
    from typer.testing import CliRunner

    from bnnlab.cli import app

    runner = CliRunner()

    def invoke(args, **kw):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)

    return invoke
