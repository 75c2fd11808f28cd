"""Resume after SIGKILL: same MLflow run, one metric series, same numbers as no kill."""

import json

import pytest
import torch
from conftest import FAST, all_runs, run_cli, series

from bnnlab.tracking import checkpoint_dir

BOP = ["--optimizer", "bop", "--gamma", "0.05", "--tau", "1e-8", "--epochs", "3", *FAST]
KEYS = ("val/top1", "val/loss", "train/loss", "bop/flip_ratio")


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def _by_experiment(client, name):
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id]) if exp else []


def _check_same_as_uninterrupted(client, cli, resumed_id):
    ref = cli(["train", *BOP, "--experiment", "reference", "--json"])
    assert ref.exit_code == 0, ref.output
    ref_id = _json(ref.output)["run_id"]
    for key in KEYS:
        got, want = series(client, resumed_id, key), series(client, ref_id, key)
        assert [s for s, _ in got] == [0, 1, 2], (key, got)  # one point per epoch, none twice
        assert got == want, key  # bit-identical on CPU
    a, b = client.get_run(resumed_id).data.metrics, client.get_run(ref_id).data.metrics
    for key in ("final/val_top1", "final/val_loss", "best/val_top1", "mean/bop_flip_ratio", "epochs"):
        assert a[key] == b[key], key
    # the final checkpoints agree on every weight and optimizer state (Bop momentum, Adam moments)
    a, b = (torch.load(checkpoint_dir(r) / "last.ckpt", map_location="cpu", weights_only=False)
            for r in (resumed_id, ref_id))
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    for k, v in b["state_dict"].items():
        assert torch.equal(a["state_dict"][k], v), k
    assert len(a["optimizer_states"]) == 2  # Bop + Adam
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert oa["state"].keys() == ob["state"].keys() and oa["state"]
        for i, st in ob["state"].items():
            for name, t in st.items():
                assert torch.equal(torch.as_tensor(oa["state"][i][name]), torch.as_tensor(t)), (i, name)


def test_sigkill_mid_epoch_then_resume_continues_same_run(cli, client):
    killed = run_cli(["train", *BOP, "--experiment", "kill", "--json"], env={"BNNLAB_FAULT": "sigkill@1:3"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run,) = _by_experiment(client, "kill")
    assert run.info.status == "RUNNING"  # SIGKILL gives no chance to mark it
    assert [s for s, _ in series(client, run.info.run_id, "val/top1")] == [0]

    res = cli(["train", *BOP, "--experiment", "kill", "--resume", "--json"])
    assert res.exit_code == 0, res.output
    assert "resuming run" in res.output
    out = _json(res.output)
    assert out["run_id"] == run.info.run_id and out["status"] == "FINISHED"
    runs = _by_experiment(client, "kill")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["bnnlab.resumes"] == "1" and "bnnlab.failure" not in runs[0].data.tags
    _check_same_as_uninterrupted(client, cli, run.info.run_id)


@pytest.mark.slow
def test_sigkill_between_checkpoint_and_metrics_backfills_once(cli, client):
    """Killed right after checkpoint 1 was written but before epoch 1's metrics were logged:
    the resume starts at epoch 2 and back-fills epoch 1 from the checkpoint."""
    killed = run_cli(["train", *BOP, "--experiment", "gap", "--json"], env={"BNNLAB_FAULT": "sigkill@1:end"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run,) = _by_experiment(client, "gap")
    assert [s for s, _ in series(client, run.info.run_id, "val/top1")] == [0]
    res = run_cli(["train", *BOP, "--experiment", "gap", "--resume-run", run.info.run_id, "--json"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert _json(res.stdout)["run_id"] == run.info.run_id
    _check_same_as_uninterrupted(client, cli, run.info.run_id)


@pytest.mark.slow
def test_resume_twice_and_explicit_run_id(cli, client):
    """Two kills in one run (epoch 0 before any checkpoint, then epoch 2), both resumed."""
    first = run_cli(["train", *BOP, "--experiment", "twice"], env={"BNNLAB_FAULT": "sigkill@0:2"})
    assert first.returncode == -9
    (run,) = _by_experiment(client, "twice")
    second = run_cli(["train", *BOP, "--experiment", "twice", "--resume-run", run.info.run_id],
                     env={"BNNLAB_FAULT": "sigkill@2:1"})
    assert second.returncode == -9 and "from the start" in second.stdout
    res = cli(["train", *BOP, "--experiment", "twice", "--resume", "--json"])
    assert res.exit_code == 0, res.output
    runs = _by_experiment(client, "twice")
    assert len(runs) == 1 and runs[0].data.tags["bnnlab.resumes"] == "2"
    _check_same_as_uninterrupted(client, cli, run.info.run_id)


def test_resume_refuses_finished_or_different_config(cli, client):
    done = cli(["train", "--epochs", "1", *FAST, "--json"])
    run_id = _json(done.output)["run_id"]
    res = cli(["train", "--epochs", "1", *FAST, "--resume-run", run_id])
    assert res.exit_code == 2 and "FINISHED" in res.output and "Traceback" not in res.output
    res = cli(["train", "--epochs", "2", *FAST, "--resume-run", run_id])
    assert res.exit_code == 2 and "different config" in res.output
    res = cli(["train", "--epochs", "1", *FAST, "--resume-run", "0123456789abcdef"])
    assert res.exit_code == 2 and "no such run" in res.output
    # --resume with nothing to resume starts a new run
    res = cli(["train", "--epochs", "1", *FAST, "--resume", "--json"])
    assert res.exit_code == 0 and _json(res.output)["run_id"] != run_id
    assert len(all_runs(client)) == 2
