import pytest
import torch
from torch import nn

from bnnlab.methods import LOSSES, ContrastiveMILoss


def _identity_heads(loss: ContrastiveMILoss) -> ContrastiveMILoss:
    with torch.no_grad():
        for head in (loss.embed_student, loss.embed_teacher):
            head.weight.copy_(torch.eye(head.out_features, head.in_features))
            head.bias.zero_()
    return loss


def _filled(num_samples=64, dim=16, **kw):
    torch.manual_seed(0)
    feats = torch.randn(num_samples, dim)
    loss = _identity_heads(ContrastiveMILoss(dim, dim, num_samples, feat_dim=dim, **kw))
    idx = torch.arange(num_samples)
    with torch.no_grad():
        for _ in range(3):  # fill both banks with the true embeddings
            loss(feats, feats, idx)
    return loss, feats


def test_aligned_features_give_lower_loss_than_shuffled():
    loss, feats = _filled(num_negatives=32)
    idx = torch.arange(0, 16)
    torch.manual_seed(1)
    with torch.no_grad():
        aligned = loss(feats[idx], 2.0 * feats[idx], idx)  # teacher = linear map of student
        shuffled = loss(feats[idx], feats[idx.roll(1)], idx)
    assert aligned < shuffled - 1.0


def test_memory_bank_buffers_and_updates_only_indexed_rows():
    loss = ContrastiveMILoss(8, 12, num_samples=20, feat_dim=4, num_negatives=4096)
    assert loss.num_negatives == 19
    state = loss.state_dict()
    assert state["memory_student"].shape == (20, 4) and state["memory_teacher"].shape == (20, 4)
    assert torch.allclose(loss.memory_student.norm(dim=1), torch.ones(20))
    assert "memory_student" not in dict(loss.named_parameters())
    loss = loss.to(torch.float64)
    assert loss.memory_teacher.dtype == torch.float64  # buffers follow .to()
    loss = loss.float()
    before_s, before_t = loss.memory_student.clone(), loss.memory_teacher.clone()
    idx = torch.tensor([3, 7, 11])
    loss(torch.randn(3, 8, 2, 2), torch.randn(3, 12), idx)
    for before, after in ((before_s, loss.memory_student), (before_t, loss.memory_teacher)):
        changed = (before != after).any(dim=1)
        assert changed.nonzero().flatten().tolist() == [3, 7, 11]
        assert torch.allclose(after.norm(dim=1), torch.ones(20), atol=1e-5)
    # momentum update formula
    s, t = loss.embed(torch.randn(1, 8), torch.randn(1, 12))
    row = loss.memory_student[5].clone()
    loss.update_memory(s, t, torch.tensor([5]))
    expected = torch.nn.functional.normalize(0.5 * row + 0.5 * s[0].detach(), dim=0)
    assert torch.allclose(loss.memory_student[5], expected, atol=1e-6)
    # eval mode leaves the banks alone
    loss.eval()
    frozen = loss.memory_student.clone()
    loss(torch.randn(3, 8), torch.randn(3, 12), idx)
    assert torch.equal(frozen, loss.memory_student)
    # a restored state_dict restores the banks
    other = ContrastiveMILoss(8, 12, num_samples=20, feat_dim=4)
    other.load_state_dict(loss.state_dict())
    assert torch.equal(other.memory_teacher, loss.memory_teacher)


def test_gradients_reach_student_and_heads_not_teacher():
    loss = ContrastiveMILoss(8, 6, num_samples=30, feat_dim=5, num_negatives=10)
    s = torch.randn(4, 8, 3, 3, requires_grad=True)
    t = torch.randn(4, 6, requires_grad=True)
    loss(s, t, torch.tensor([0, 1, 2, 3])).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    for p in loss.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_asymmetric_and_validation():
    loss = ContrastiveMILoss(4, 4, num_samples=10, feat_dim=4, num_negatives=3, symmetric=False)
    assert torch.isfinite(loss(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 9])))
    with pytest.raises(ValueError, match="indices"):
        loss(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="index"):
        loss(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0]))
    with pytest.raises(ValueError):
        ContrastiveMILoss(4, 4, num_samples=1)
    assert LOSSES.get("cmim") is ContrastiveMILoss
    assert isinstance(loss, nn.Module)
