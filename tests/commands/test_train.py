"""`bnnlab train` end to end through the CLI into a temporary MLflow store."""

import json

from mlflow import MlflowClient

from bnnlab.tracking import resolve_tracking_uri


def _only_run(client):
    exps = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in exps])
    return runs


def test_train_records_a_complete_run(cli):
    res = cli(["train", "--epochs", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["status"] == "FINISHED"
    client = MlflowClient(resolve_tracking_uri())
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["model.name"] == "binary-mlp" and p["optim.name"] == "adam" and p["trainer.epochs"] == "2"
    assert p["data_info.num_classes"] == "10"
    assert "git.commit" in t and t["bnnlab.version"] and t["bnnlab.level"] == "row"
    hist = client.get_metric_history(run.info.run_id, "val/top1")
    assert sorted(h.step for h in hist) == [0, 1]
    assert 0.0 <= m["final/val_top1"] <= 1.0 and m["best/val_top1"] >= m["final/val_top1"]
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in arts and "checkpoints" in arts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/last.ckpt"]

    listed = cli(["runs", "--json"])
    assert listed.exit_code == 0
    rows = json.loads(listed.output)
    assert [r["run_id"] for r in rows] == [out["run_id"]]


def test_train_with_bop_logs_flip_ratio(cli):
    res = cli(["train", "--optimizer", "bop", "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    client = MlflowClient(resolve_tracking_uri())
    hist = client.get_metric_history(out["run_id"], "bop/flip_ratio")
    assert len(hist) == 1 and 0.0 < hist[0].value <= 1.0


def test_bad_input_is_one_line_exit_2(cli):
    res = cli(["train", "--model", "bireal81"])
    assert res.exit_code == 2
    assert "bireal18" in res.output and "Traceback" not in res.output
    res = cli(["train", "--lr", "-1"])
    assert res.exit_code == 2 and "optim.lr" in res.output
    res = cli(["train", "--set", "optim.lr"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output


def test_every_command_has_help(cli):
    from bnnlab.cli import app

    res = cli(["--help"])
    assert res.exit_code == 0
    for command in app.registered_commands:
        assert command.help, command.name
        assert cli([command.name, "--help"]).exit_code == 0


def test_threads_option_sets_torch_threads(cli):
    import torch

    before = torch.get_num_threads()
    try:
        res = cli(["train", "--epochs", "1", "--threads", "1", "--json"])
        assert res.exit_code == 0, res.output
        assert torch.get_num_threads() == 1
        out = json.loads(res.output[res.output.index("{"):])
        assert MlflowClient(resolve_tracking_uri()).get_run(out["run_id"]).data.params["trainer.num_threads"] == "1"
    finally:
        torch.set_num_threads(before)
