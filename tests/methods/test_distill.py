import pytest
import torch
import torch.nn.functional as F

from bnnlab.methods import LOSSES, DistributionalLoss, distributional_loss, mix_targets


def _logits(seed=0, n=8, c=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64), torch.randn(
        n, c, generator=g, dtype=torch.float64
    )


def test_equals_kl_plus_teacher_entropy():
    s, t = _logits()
    p_t = t.softmax(-1)
    kl = F.kl_div(s.log_softmax(-1), p_t, reduction="batchmean")
    entropy = -(p_t * p_t.log()).sum(-1).mean()
    assert torch.allclose(distributional_loss(s, t), kl + entropy, atol=1e-10)
    assert torch.allclose(DistributionalLoss()(s, t), kl + entropy, atol=1e-10)


def test_gradient_equals_kl_gradient_and_teacher_detached():
    s, t = _logits(1)
    s1, s2, t1 = s.clone().requires_grad_(), s.clone().requires_grad_(), t.clone().requires_grad_()
    DistributionalLoss()(s1, t1).backward()
    F.kl_div(s2.log_softmax(-1), t.softmax(-1), reduction="batchmean").backward()
    assert torch.allclose(s1.grad.double(), s2.grad, atol=1e-10)
    # closed form: (p_S - p_T) / N
    assert torch.allclose(s1.grad.double(), (s.softmax(-1) - t.softmax(-1)) / s.shape[0], atol=1e-10)
    assert t1.grad is None


def test_temperature_scales_by_t_squared():
    s, t = _logits(2)
    T = 4.0
    expected = -(torch.softmax(t / T, -1) * torch.log_softmax(s / T, -1)).sum(-1).mean() * T**2
    assert torch.allclose(DistributionalLoss(temperature=T)(s, t).double(), expected, atol=1e-10)
    assert torch.allclose(distributional_loss(s, t, T).double(), expected, atol=1e-10)


def test_hard_term_int_and_soft_targets():
    s, t = _logits(3)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    loss = DistributionalLoss(hard_weight=0.5)
    expected = distributional_loss(s, t) + 0.5 * F.cross_entropy(s, y)
    assert torch.allclose(loss(s, t, y), expected, atol=1e-10)
    # one-hot soft targets give the same value; mixed targets are accepted
    soft = F.one_hot(y, 5).double()
    assert torch.allclose(loss(s, t, soft), expected, atol=1e-10)
    mixed = mix_targets(y, y.flip(0), 0.7, 5)
    assert torch.isfinite(loss(s, t, mixed))
    with pytest.raises(ValueError, match="target"):
        loss(s, t)
    smooth = DistributionalLoss(hard_weight=1.0, label_smoothing=0.1)(s, t, y)
    assert torch.allclose(smooth, distributional_loss(s, t) + F.cross_entropy(s, y, label_smoothing=0.1))


def test_validation_and_registry():
    with pytest.raises(ValueError):
        DistributionalLoss(temperature=0)
    with pytest.raises(ValueError, match="shape"):
        distributional_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    assert LOSSES.get("kd") is DistributionalLoss
    assert LOSSES.get("ce") is torch.nn.CrossEntropyLoss
