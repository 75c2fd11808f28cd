"""Multi-step procedures through the CLI: ReActNet's two steps, Bi-Real's three parts."""

import pytest
import torch
import yaml
from mlflow import MlflowClient

from bnnlab.binary import binary_weights
from bnnlab.tracking import resolve_tracking_uri
from bnnlab.training import BnnModule, _read_state_dict

FAST = ["--scale", "mini", "--seeds", "1", "--set", "trainer.epochs=1", "--set", "trainer.limit_train_batches=3",
        "--set", "trainer.limit_val_batches=2"]


def _steps(client):
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string="tags.`bnnlab.level` = 'step'")
    return {r.data.tags["bnnlab.step"]: r for r in runs}


def _config(client, run):
    path = client.download_artifacts(run.info.run_id, "config.yaml")
    return yaml.safe_load(open(path))



def _state_of(client, run):
    path = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt")
    return _read_state_dict(path)


def _module(client, run):
    info = {k[len("data_info."):]: int(v) for k, v in run.data.params.items() if k.startswith("data_info.")}
    return BnnModule(_config(client, run), info)


def test_reactnet_two_steps_transfer_every_parameter(cli):
    res = cli(["reproduce", "reactnet-imagenet", "--rows", "abl-rsign", *FAST])
    assert res.exit_code == 0, res.output
    client = MlflowClient(resolve_tracking_uri())
    steps = _steps(client)
    assert set(steps) == {"step1", "step2"}
    assert all(r.info.status == "FINISHED" for r in steps.values())
    assert len(client.get_metric_history(steps["step2"].info.run_id, "val/top1")) == 1
    cfg1, cfg2 = _config(client, steps["step1"]), _config(client, steps["step2"])
    assert cfg1["model"]["weight"] == "real" and cfg2["model"]["weight"] != "real"
    assert cfg1["optim"]["weight_decay"] > 0 and cfg1["optim"]["weight_decay_on"] == "conv"
    assert cfg2["optim"]["weight_decay"] == 0
    step1_final = _state_of(client, steps["step1"])
    step2_start = _module(client, steps["step2"]).model.state_dict()  # built from step 1's checkpoint
    assert set(step1_final) == set(step2_start)
    for key, value in step1_final.items():
        assert torch.equal(value, step2_start[key]), key


def test_bireal_three_parts_end_with_exact_pm1_weights(cli):
    res = cli(["reproduce", "bireal-imagenet", "--rows", "two-step", *FAST])
    assert res.exit_code == 0, res.output
    client = MlflowClient(resolve_tracking_uri())
    steps = _steps(client)
    assert set(steps) == {"pretrain", "train", "bn"}
    cfgs = {k: _config(client, r) for k, r in steps.items()}
    assert cfgs["pretrain"]["model"]["weight"] == "real"
    assert cfgs["pretrain"]["model"]["activation"] in ("clip", "relu")
    assert cfgs["train"]["model"]["activation"] == "approx" and cfgs["train"]["model"]["weight"] == "scaled"
    assert cfgs["bn"]["train_only"] == "bn" and cfgs["bn"]["init"]["snap_weights"]
    trained = _state_of(client, steps["train"])
    final = _state_of(client, steps["bn"])
    model = _module(client, steps["bn"]).model
    binary = {name for name, _ in binary_weights(model)}
    assert binary
    bn_modules = {n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    for key, value in final.items():
        if key in binary:
            assert set(value.unique().tolist()) <= {-1.0, 1.0}, key
            assert torch.equal(value, torch.where(trained[key] >= 0, 1.0, -1.0)), key
        elif key.rsplit(".", 1)[0] not in bn_modules:
            assert torch.equal(value, trained[key]), f"{key} changed although only BatchNorm trains"


def test_transfer_refuses_missing_keys(tmp_path):
    """A step whose model differs from the previous step's fails loudly, listing keys."""
    from bnnlab.config import StepConfig, apply_overrides
    from bnnlab.errors import BnnlabError
    from bnnlab.training import build_model

    src = build_model(StepConfig.model_validate(apply_overrides({}, {"model.name": "reactnet18",
                      "model.options": {"width": 0.125}})), 10, 1, 8)
    path = tmp_path / "step1.pt"
    torch.save(src.state_dict(), path)
    cfg = apply_overrides({}, {"model.name": "reactnet18", "model.options": {"width": 0.125, "rsign": False},
                               "init.from": str(path)})
    with pytest.raises(BnnlabError, match="missing|unexpected"):
        BnnModule(cfg, dict(num_classes=10, in_channels=1, input_size=8, train_size=100))
