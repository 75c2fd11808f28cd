"""Eight `bnnlab train` processes at once into one fresh embedded SQLite store."""

import os
import subprocess

import pytest
from conftest import FAST, all_runs, bnnlab_cmd, series


@pytest.mark.slow
def test_eight_concurrent_trains_all_recorded(tmp_path, client):
    home = tmp_path / "fresh-home"  # a store nobody has created yet: the schema race is part of the test
    env = {**os.environ, "BNNLAB_HOME": str(home)}
    procs = [subprocess.Popen([*bnnlab_cmd(), "train", "--epochs", "2", "--seed", str(i), *FAST,
                               "--experiment", "crowd"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = all_runs(client)
    assert len(runs) == 8
    assert sorted(r.data.tags["bnnlab.seed"] for r in runs) == [str(i) for i in range(8)]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert [s for s, _ in series(client, r.info.run_id, "val/top1")] == [0, 1]
        assert "final/val_top1" in r.data.metrics
