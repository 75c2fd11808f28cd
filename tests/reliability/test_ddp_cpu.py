"""Two-process DDP on CPU (gloo): one MLflow run, rank-0 metrics, identical binary weights."""

import pytest
import torch
from conftest import FAST, all_runs, run_cli, series


@pytest.mark.slow
def test_ddp_two_processes_with_bop(tmp_path, client):
    dump = tmp_path / "weights"
    res = run_cli(["train", "--devices", "2", "--strategy", "ddp", "--optimizer", "bop", "--epochs", "2",
                   *FAST, "--experiment", "ddp"],
                  env={"BNNLAB_DUMP_BINARY_WEIGHTS": str(dump), "MASTER_PORT": "29517"}, timeout=900)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    runs = all_runs(client)
    assert len(runs) == 1, [r.info.run_name for r in runs]  # the rank-1 process created no run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    for key in ("val/top1", "train/loss", "bop/flip_ratio"):
        assert [s for s, _ in series(client, run.info.run_id, key)] == [0, 1], key  # logged once
    r0, r1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    assert r0.keys() == r1.keys() and r0
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # all-reduced gradients -> identical Bop flips
