"""The Lightning module: optimizer pairing, frozen parameters, weight transfer."""

import lightning as L
import pytest
import torch

from bnnlab.binary import Bop, binary_weights
from bnnlab.config import StepConfig, apply_overrides
from bnnlab.errors import BnnlabError
from bnnlab.training import BnnModule, build_model, load_model_weights

INFO = dict(num_classes=10, in_channels=1, input_size=8, train_size=1437)


def _fit(cfg: StepConfig, epochs=1, batches=5, module=None):
    from bnnlab.data import create_datamodule

    dm = create_datamodule("digits", batch_size=64, seed=cfg.seed)
    module = module or BnnModule(cfg.model_dump(by_alias=True), INFO)
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=2,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    return module, trainer


def _cfg(**over):
    return StepConfig.model_validate(apply_overrides({}, over))


def test_bop_pairs_with_adam_and_keeps_weights_binary():
    module, trainer = _fit(_cfg(**{"optim.name": "bop"}))
    opts = [o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers]
    assert isinstance(opts[0], Bop) and isinstance(opts[1], torch.optim.Adam)
    bop_ids = {id(p) for g in opts[0].param_groups for p in g["params"]}
    adam_ids = {id(p) for g in opts[1].param_groups for p in g["params"]}
    assert bop_ids == {id(p) for _, p in binary_weights(module.model)}
    assert not bop_ids & adam_ids
    assert len(bop_ids) + len(adam_ids) == len(list(module.parameters()))
    for _, w in binary_weights(module.model):
        assert set(w.unique().tolist()) <= {-1.0, 1.0}
    assert "bop/flip_ratio" in trainer.callback_metrics


def test_bop_on_real_model_is_a_clear_error():
    with pytest.raises(BnnlabError, match="binary weights"):
        _fit(_cfg(**{"optim.name": "bop", "model.weight": "real"}))


def test_train_only_bn_changes_nothing_else():
    module = BnnModule(_cfg(train_only="bn").model_dump(by_alias=True), INFO)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    _fit(module.cfg, module=module)
    bn_names = {n for n, m in module.model.named_modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    changed = {k for k, v in module.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "BatchNorm should have trained"
    assert {k.rsplit(".", 1)[0] for k in changed} <= bn_names
    assert any(k.endswith(".weight") for k in changed)  # affine params trained, not only stats


def test_weight_decay_on_conv_weights_only():
    cfg = _cfg(**{"optim.weight_decay": 1e-5, "optim.weight_decay_on": "conv"})
    module = BnnModule(cfg.model_dump(by_alias=True), INFO)
    groups = module._param_groups(list(module.model.parameters()), set())
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 1e-5 and groups[1]["weight_decay"] == 0.0
    for p in module.model.parameters():
        assert (id(p) in decayed) == (p.dim() > 1)


def test_weight_transfer_is_strict(tmp_path):
    cfg = _cfg()
    model = build_model(cfg, 10, 1, 8)
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    other = build_model(cfg, 10, 1, 8)
    assert not any(load_model_weights(other, path).values())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    state = model.state_dict()
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(BnnlabError) as exc:
        load_model_weights(other, path)
    assert "missing" in str(exc.value) and "unexpected" in str(exc.value) and "extra.weight" in str(exc.value)
    wrong = build_model(_cfg(**{"model.options": {"hidden": 32}}), 10, 1, 8)
    torch.save(wrong.state_dict(), path)
    with pytest.raises(BnnlabError, match="shape mismatch"):
        load_model_weights(other, path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BnnlabError, match="cannot read checkpoint"):
        load_model_weights(other, path)


def test_nonfinite_loss_stops_with_step(monkeypatch):
    from bnnlab.training import NonFiniteLossError

    cfg = _cfg(**{"optim.lr": 1e30, "optim.name": "sgd", "optim.momentum": 0.0})
    with pytest.raises(NonFiniteLossError, match="batch"):
        _fit(cfg, epochs=3, batches=20)


def test_torchvision_resnet_state_dict_loads_as_teacher(tmp_path):
    """A user-downloaded torchvision ResNet state_dict serves as a frozen teacher as is."""
    import torchvision

    from bnnlab.config import TeacherConfig
    from bnnlab.training import build_frozen

    tv = torchvision.models.resnet18(weights=None, num_classes=10)
    path = tmp_path / "resnet18-torchvision.pth"
    torch.save(tv.state_dict(), path)
    teacher = build_frozen(TeacherConfig(model="resnet18", checkpoint=str(path)), 10, 3, 224)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 64, 64)
    tv.eval()
    assert torch.allclose(teacher(x), tv(x), atol=1e-5)
