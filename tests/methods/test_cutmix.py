import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnnlab.methods import (
    AUGMENTS,
    AttentiveCutMix,
    CutMix,
    NoMix,
    cell_boundaries,
    mix_targets,
    mixed_cross_entropy,
)


def _constant_batch(n=6, c=3, size=32):
    """Image i is the constant i + 1 everywhere, so every pixel tells its source image."""
    x = torch.arange(1, n + 1, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, c, size, size).clone()
    return x, torch.arange(n)


class FixedMap(nn.Module):
    """Fake extractor: a fixed (N, C, g, g) map per image, keyed by the image's constant value."""

    def __init__(self, maps):
        super().__init__()
        self.register_buffer("maps", maps)  # (num_images, g, g)
        self.weight = nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        ids = x[:, 0, 0, 0].round().long() - 1
        return self.maps[ids][:, None].expand(-1, 4, -1, -1) * self.weight


def test_cutmix_lam_equals_kept_pixel_fraction():
    x, y = _constant_batch()
    mixer = CutMix(alpha=1.0)
    g = torch.Generator().manual_seed(0)
    seen_partial = False
    for _ in range(20):
        mixed, y_a, y_b, lam = mixer(x, y, generator=g)
        assert isinstance(lam, float)
        assert torch.equal(y_a, y)
        pasted = (mixed != x)[:, 0]  # (N, H, W); partner differs from every image
        # pasted pixels come from the partner named by y_b
        for i in range(len(y)):
            assert torch.all(mixed[i, :, pasted[i]] == float(y_b[i] + 1))
            if y_b[i] != y[i]:
                assert pasted[i].float().mean().item() == pytest.approx(1 - lam)
        seen_partial |= 0.0 < lam < 1.0
    assert seen_partial


def test_cutmix_deterministic_with_generator_and_prob():
    x, y = _constant_batch(size=224)
    a = CutMix()(x, y, generator=torch.Generator().manual_seed(3))
    b = CutMix(generator=torch.Generator().manual_seed(3))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and a[3] == b[3]
    out = CutMix(prob=0.0)(x, y)
    assert out[0] is x and out[3] == 1.0
    with pytest.raises(ValueError):
        CutMix(alpha=0)


@pytest.mark.parametrize("size,grid,top_k", [(32, 8, 6), (224, 7, 6)])
def test_attentive_pastes_exactly_top_cells(size, grid, top_k):
    n = 4
    x, y = _constant_batch(n=n, size=size)
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(n, grid, grid, generator=gen)
    ext = FixedMap(maps)
    mixer = AttentiveCutMix(ext, grid=grid, top_k=top_k)
    assert not ext.training and not ext.weight.requires_grad
    mixed, y_a, y_b, lam = mixer(x, y, generator=torch.Generator().manual_seed(1))
    assert lam == pytest.approx(1 - top_k / grid**2) and isinstance(lam, float)
    assert torch.equal(y_a, y)
    cell = size // grid
    for i in range(n):
        partner = int(y_b[i])
        top = set(maps[partner].flatten().topk(top_k).indices.tolist())
        for r in range(grid):
            for c in range(grid):
                block = mixed[i, :, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
                src = partner if r * grid + c in top else i
                assert torch.all(block == src + 1), (i, r, c)


def test_attentive_lam_matches_partner_label_weight():
    x, y = _constant_batch(n=5, size=32)
    maps = torch.rand(5, 8, 8, generator=torch.Generator().manual_seed(2))
    mixed, y_a, y_b, lam = AttentiveCutMix(FixedMap(maps), grid=8, top_k=6)(x, y)
    pasted = (mixed != x)[:, 0].flatten(1).float().mean(1)
    moved = y_b != y_a
    assert torch.allclose(pasted[moved], torch.full_like(pasted[moved], 6 / 64))
    soft = mix_targets(y_a, y_b, lam, 5)
    assert torch.allclose(soft.sum(1), torch.ones(5))
    assert torch.allclose(soft[moved, y_b[moved]], torch.full((int(moved.sum()),), 6 / 64))


def test_attentive_non_divisible_grid_and_pooling():
    # 30 pixels, 7x7 grid: cells of 4 or 5 pixels; extractor returns 14x14 (pooled to 7x7)
    x, y = _constant_batch(n=4, size=30)
    big = torch.rand(4, 14, 14, generator=torch.Generator().manual_seed(4))
    mixer = AttentiveCutMix(FixedMap(big), grid=7, top_k=3)
    mixed, y_a, y_b, lam = mixer(x, y, generator=torch.Generator().manual_seed(0))
    assert isinstance(lam, torch.Tensor) and lam.shape == (4,)
    pasted = (mixed != x)[:, 0].flatten(1).float().mean(1)
    moved = y_b != y_a
    assert torch.allclose(1 - lam[moved], pasted[moved])
    b = cell_boundaries(30, 7)
    assert b[0] == 0 and b[-1] == 30 and len(b) == 8
    pooled = F.adaptive_avg_pool2d(big[:, None], 7)[:, 0]
    for i in range(4):
        p = int(y_b[i])
        top = pooled[p].flatten().topk(3).indices.tolist()
        area = sum(int(b[k // 7 + 1] - b[k // 7]) * int(b[k % 7 + 1] - b[k % 7]) for k in top)
        assert lam[i].item() == pytest.approx(1 - area / 900)
    # per-sample lam works in the loss
    logits = torch.randn(4, 4, requires_grad=True)
    loss = mixed_cross_entropy(logits, y_a, y_b, lam)
    ref = -(mix_targets(y_a, y_b, lam, 4) * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(loss, ref, atol=1e-6)


def test_attentive_uses_forward_features_and_determinism():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 4, stride=4)

        def forward_features(self, x):
            return self.conv(x)

        def forward(self, x):  # pragma: no cover - must not be used
            raise AssertionError("forward_features should be used")

    x = torch.randn(6, 3, 32, 32)
    y = torch.arange(6)
    torch.manual_seed(0)
    mixer = AttentiveCutMix(Net(), grid=8, top_k=4)
    a = mixer(x, y, generator=torch.Generator().manual_seed(5))
    b = mixer(x, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert AttentiveCutMix(Net(), prob=0.0)(x, y)[3] == 1.0
    with pytest.raises(ValueError):
        AttentiveCutMix(Net(), grid=2, top_k=5)


def test_mixed_cross_entropy_float_lam_and_registry():
    logits = torch.randn(5, 3)
    y_a, y_b = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 1, 0, 0])
    ref = 0.3 * F.cross_entropy(logits, y_a) + 0.7 * F.cross_entropy(logits, y_b)
    assert torch.allclose(mixed_cross_entropy(logits, y_a, y_b, 0.3), ref)
    assert torch.allclose(F.cross_entropy(logits, mix_targets(y_a, y_b, 0.3, 3)), ref, atol=1e-6)
    assert set(AUGMENTS.names()) == {"none", "cutmix", "attentive"}
    assert isinstance(AUGMENTS.get("none")(), NoMix)
    assert AUGMENTS.get("cutmix") is CutMix


def test_mixers_follow_the_batch_device():
    # the meta device stands in for an accelerator: the extractor must move to the batch
    ext = nn.Conv2d(3, 8, 4, stride=4)
    x, y = torch.randn(4, 3, 32, 32, device="meta"), torch.arange(4, device="meta")
    mixed, y_a, y_b, lam = AttentiveCutMix(ext, grid=8, top_k=4)(x, y)
    assert mixed.device.type == "meta" and y_b.device.type == "meta"
    assert ext.weight.device.type == "meta"
    assert CutMix()(x, y)[0].device.type == "meta"
