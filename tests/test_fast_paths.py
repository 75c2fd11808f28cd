"""Fast paths against the plain path: channels_last, bf16-mixed, torch.compile."""

import lightning as L
import pytest
import torch

from bnnlab.config import StepConfig, apply_overrides
from bnnlab.training import BnnModule

INFO = dict(num_classes=10, in_channels=1, input_size=8, train_size=1437)
CNN = {"model.name": "binary-cnn-tiny"}


def _module(**over):
    torch.manual_seed(0)
    return BnnModule(StepConfig.model_validate(apply_overrides({}, {**CNN, **over})).model_dump(by_alias=True), INFO)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(16, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (16,), generator=g)


def _grads(module):
    x, y = _batch()
    x = module._prep(x)
    loss = torch.nn.functional.cross_entropy(module.model(x), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.model.parameters()]


def test_channels_last_matches_contiguous():
    plain, fast = _module(), _module(**{"trainer.channels_last": True})
    l1, g1 = _grads(plain)
    l2, g2 = _grads(fast)
    assert torch.allclose(l1, l2, atol=1e-5)
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_bf16_mixed_trains_and_keeps_binary_values_exact():
    from bnnlab.data import create_datamodule

    module = _module(**{"optim.name": "bop", "trainer.precision": "bf16-mixed"})
    dm = create_datamodule("digits", batch_size=64)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, precision="bf16-mixed",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    from bnnlab.binary import binary_weights, ste_sign

    for _, w in binary_weights(module.model):
        assert set(w.unique().tolist()) <= {-1.0, 1.0}
    x = torch.randn(1000).to(torch.bfloat16)
    assert torch.equal(ste_sign(x).float(), torch.where(x.float() >= 0, 1.0, -1.0))


@pytest.mark.slow
def test_compile_matches_eager_and_keeps_state_dict_keys():
    eager, compiled = _module(), _module(**{"trainer.compile": True})
    assert list(eager.model.state_dict()) == list(compiled.model.state_dict())
    l1, g1 = _grads(eager)
    x, y = _batch()
    loss = torch.nn.functional.cross_entropy(
        compiled.model.forward_head(compiled.model.forward_features(x)), y)
    loss.backward()
    assert torch.allclose(l1, loss.detach(), atol=1e-5)
    for a, p in zip(g1, compiled.model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-4, rtol=1e-3)
