"""Ctrl-C, SIGTERM and NaN losses: checkpoint kept, run marked, one line, resumable."""

import json

from conftest import FAST, all_runs, series

from bnnlab.tracking import checkpoint_dir

ARGS = ["--epochs", "3", "--optimizer", "bop", *FAST]


def _one_run(client):
    (run,) = all_runs(client)
    return run


def test_ctrl_c_marks_killed_saves_checkpoint_and_resumes(cli, client, monkeypatch):
    monkeypatch.setenv("BNNLAB_FAULT", "sigint@1:2")
    res = cli(["train", *ARGS])
    assert res.exit_code == 130, res.output
    err = res.output.strip().splitlines()[-1]
    assert err.startswith("error: interrupted by SIGINT") and "--resume" in err and "Traceback" not in res.output
    run = _one_run(client)
    assert run.info.status == "KILLED" and run.data.tags["bnnlab.failure"] == "interrupted by SIGINT"
    folder = checkpoint_dir(run.info.run_id)
    assert (folder / "last.ckpt").is_file() and (folder / "interrupted.ckpt").is_file()
    monkeypatch.delenv("BNNLAB_FAULT")
    res = cli(["train", *ARGS, "--resume", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["run_id"] == run.info.run_id
    run = _one_run(client)
    assert run.info.status == "FINISHED"
    assert [s for s, _ in series(client, run.info.run_id, "val/top1")] == [0, 1, 2]


def test_sigterm_marks_killed_exit_143(cli, client, monkeypatch):
    monkeypatch.setenv("BNNLAB_FAULT", "sigterm@1:1")
    res = cli(["train", *ARGS])
    assert res.exit_code == 143, res.output
    assert "interrupted by SIGTERM" in res.output
    run = _one_run(client)
    assert run.info.status == "KILLED" and run.data.tags["bnnlab.failure"] == "interrupted by SIGTERM"


def test_nan_loss_fails_run_keeps_last_good_checkpoint(cli, client, monkeypatch):
    monkeypatch.setenv("BNNLAB_FAULT", "nan@1:2")
    res = cli(["train", *ARGS])
    assert res.exit_code == 3, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "loss is nan at epoch 1, batch 2 (global step" in lines[0]
    assert "last good checkpoint" in lines[0] and "after epoch 1" in lines[0]
    run = _one_run(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["bnnlab.failure"].startswith("NonFiniteLossError: loss is nan at epoch 1")
    import torch

    ckpt = torch.load(checkpoint_dir(run.info.run_id) / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()
                                      if v.is_floating_point())
    assert [s for s, _ in series(client, run.info.run_id, "val/top1")] == [0]
    # --resume does not pick a FAILED run: it starts afresh
    monkeypatch.delenv("BNNLAB_FAULT")
    res = cli(["train", *ARGS, "--resume", "--json"])
    assert res.exit_code == 0 and json.loads(res.output[res.output.index("{"):])["run_id"] != run.info.run_id


def test_multi_step_interrupted_in_step_two_resumes_only_step_two(client, monkeypatch):
    from bnnlab.config import StepConfig, apply_overrides
    from bnnlab.runner import RunInterrupted, run_steps
    from bnnlab.tracking import Tracker

    base = {"trainer.limit_train_batches": 6, "trainer.limit_val_batches": 3}
    steps = [StepConfig.model_validate(apply_overrides({"name": "one"}, {**base, "trainer.epochs": 1})),
             StepConfig.model_validate(apply_overrides({"name": "two"}, {
                 **base, "trainer.epochs": 3, "init.from": "previous", "optim.name": "bop"}))]
    tracker = Tracker()
    monkeypatch.setenv("BNNLAB_FAULT", "sigint@1:1")  # only step two reaches epoch 1
    try:
        run_steps(steps, tracker=tracker, experiment="proc", run_name="p")
        raise AssertionError("should have been interrupted")
    except RunInterrupted as err:
        assert err.exit_code == 130
    by_step = {r.data.tags.get("bnnlab.step"): r for r in all_runs(client) if r.data.tags.get("bnnlab.step")}
    assert by_step["one"].info.status == "FINISHED" and by_step["two"].info.status == "KILLED"
    one_ckpt = checkpoint_dir(by_step["one"].info.run_id) / "last.ckpt"
    mtime = one_ckpt.stat().st_mtime_ns
    monkeypatch.delenv("BNNLAB_FAULT")
    results = run_steps(steps, tracker=tracker, experiment="proc", run_name="p", resume=True)
    assert [r.run_id for r in results] == [by_step["one"].info.run_id, by_step["two"].info.run_id]
    assert one_ckpt.stat().st_mtime_ns == mtime  # step one was not rerun
    runs = all_runs(client)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert [s for s, _ in series(client, by_step["two"].info.run_id, "val/top1")] == [0, 1, 2]
    assert [s for s, _ in series(client, by_step["one"].info.run_id, "val/top1")] == [0]
