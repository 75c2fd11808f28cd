"""Batch mixing augmentations: :class:`CutMix` and :class:`AttentiveCutMix`.

Every mixer is a plain callable (not an ``nn.Module``, so nothing it holds ends up in a
model's parameters or checkpoints) that works on a batch on its own device::

    mixed_x, y_a, y_b, lam = mixer(x, y)
    loss = mixed_cross_entropy(model(mixed_x), y_a, y_b, lam)
    #    = lam * CE(out, y_a) + (1 - lam) * CE(out, y_b)

**Label convention.** ``y_a = y`` is the label of the image that *receives* the patch
(the original image at that batch position) and ``lam`` is its weight: the fraction of
its pixels that were kept. ``y_b = y[perm]`` is the label of the partner image the patch
was cut from (partner = a random permutation of the batch) and gets ``1 - lam``, the
pasted area fraction. ``lam`` is a Python float when every sample has the same pasted area
(CutMix always; AttentiveCutMix when the grid divides the image size) and otherwise a
``(N,)`` tensor of per-sample weights; :func:`mixed_cross_entropy` and :func:`mix_targets`
accept both.

Randomness comes from the ``generator`` given to the constructor or the call (a CPU
``torch.Generator``) or else from torch's global RNG, so ``torch.manual_seed`` makes runs
repeatable. Random numbers are drawn on the CPU and the results moved to the batch device.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentiveCutMix",
    "CutMix",
    "NoMix",
    "cell_boundaries",
    "mix_targets",
    "mixed_cross_entropy",
]

Lam = float | Tensor


def mix_targets(y_a: Tensor, y_b: Tensor, lam: Lam, num_classes: int) -> Tensor:
    """Soft targets ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``, shape ``(N, C)``.

    ``y_a``/``y_b`` are class indices ``(N,)`` or already soft targets ``(N, C)``;
    ``lam`` is a float or an ``(N,)`` tensor.
    """

    def soft(y: Tensor) -> Tensor:
        if y.is_floating_point() and y.dim() == 2:
            return y.float()
        return F.one_hot(y.long(), num_classes).float()

    a, b = soft(y_a), soft(y_b)
    if isinstance(lam, Tensor):
        lam = lam.to(a.device, a.dtype).reshape(-1, 1)
    return lam * a + (1 - lam) * b


def mixed_cross_entropy(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Lam) -> Tensor:
    """``mean_n [lam_n CE(logits_n, y_a_n) + (1 - lam_n) CE(logits_n, y_b_n)]``.

    With a float ``lam`` this is ``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)``.
    Targets may be class indices or soft ``(N, C)`` targets.
    """
    if not isinstance(lam, Tensor):
        lam = float(lam)
        if lam == 1.0:
            return F.cross_entropy(logits, y_a)
        return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
    lam = lam.to(logits.device, torch.float32).reshape(-1)
    ce_a = F.cross_entropy(logits, y_a, reduction="none")
    ce_b = F.cross_entropy(logits, y_b, reduction="none")
    return (lam * ce_a + (1 - lam) * ce_b).mean()


def cell_boundaries(size: int, grid: int) -> Tensor:
    """Integer pixel boundaries of ``grid`` cells along a side of ``size`` pixels.

    ``round(linspace(0, size, grid + 1))``: cell ``j`` spans ``[b[j], b[j+1])``. For a size
    divisible by the grid every cell has ``size // grid`` pixels.
    """
    if not 1 <= grid <= size:
        raise ValueError(f"grid {grid} must be between 1 and the image side {size}")
    return torch.linspace(0, size, grid + 1, dtype=torch.float64).round().long()


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


class _Mixer:
    def __init__(self, prob: float, generator: torch.Generator | None):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self.generator = generator

    def _skip(self, generator: torch.Generator | None) -> bool:
        if self.prob >= 1.0:
            return False
        return float(_uniform(1, generator)) >= self.prob

    @staticmethod
    def _perm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        return torch.randperm(n, generator=generator).to(device)


class NoMix(_Mixer):
    """The identity mixer: returns ``(x, y, y, 1.0)``."""

    def __init__(self, prob: float = 1.0, generator: torch.Generator | None = None):
        super().__init__(prob, generator)

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        return x, y, y, 1.0

    def __repr__(self) -> str:
        return "NoMix()"


class CutMix(_Mixer):
    """CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features", ICCV 2019, arXiv:1905.04899).

    One box per batch, as in the official code: draw :math:`\\lambda_0 \\sim
    \\mathrm{Beta}(\\alpha, \\alpha)`, a box of side ratio :math:`\\sqrt{1 - \\lambda_0}`
    (area ratio :math:`1 - \\lambda_0`, itself Beta(alpha, alpha)) with a uniformly random
    centre, clipped to the image. The box is cut from the partner image ``x[perm]`` and
    pasted into ``x`` at the same place; the label weight of ``y_a = y`` is recomputed
    from the box as actually pasted:

    .. math::
        \\lambda = 1 - \\frac{(x_2 - x_1)(y_2 - y_1)}{W H}

    Args:
        alpha: Beta parameter (paper: 1, i.e. a uniform area ratio).
        prob: probability of mixing a batch; otherwise ``(x, y, y, 1.0)`` is returned.
        generator: default random generator (see the module docstring).

        >>> mixed, y_a, y_b, lam = CutMix(alpha=1.0)(x, y)
    """

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, generator: torch.Generator | None = None):
        super().__init__(prob, generator)
        if alpha <= 0:
            raise ValueError(f"CutMix alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def sample_box(self, height: int, width: int, generator: torch.Generator | None = None):
        """A random clipped box ``(y1, y2, x1, x2)`` (half-open pixel ranges)."""
        gen = generator if generator is not None else self.generator
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        lam0 = random.Random(seed).betavariate(self.alpha, self.alpha)
        cut = (1.0 - lam0) ** 0.5
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = (_uniform(2, gen) * torch.tensor([height, width], dtype=torch.float64)).long().tolist()
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        return y1, y2, x1, x2

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        gen = generator if generator is not None else self.generator
        if x.dim() != 4:
            raise ValueError(f"CutMix expects images (N, C, H, W), got shape {tuple(x.shape)}")
        if self._skip(gen):
            return x, y, y, 1.0
        n, _, h, w = x.shape
        perm = self._perm(n, gen, x.device)
        y1, y2, x1, x2 = self.sample_box(h, w, gen)
        mixed = x.clone()
        mixed[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        return mixed, y, y[perm], lam

    def __repr__(self) -> str:
        return f"CutMix(alpha={self.alpha}, prob={self.prob})"


class AttentiveCutMix(_Mixer):
    """Attentive CutMix (Walawalkar et al., "Attentive CutMix: An Enhanced Data Augmentation
    Approach for Deep Learning Based Image Classification", ICASSP 2020, arXiv:2003.13048).

    A frozen, pretrained ``extractor`` maps the batch to a feature map ``(N, C, h, w)`` (its
    ``forward_features`` method is used when it has one; maps of another size are adaptive-
    average-pooled to ``grid x grid``). Averaging over channels gives an attention map per
    image; the ``top_k`` most attended cells of the *partner* image ``x[perm]`` are pasted
    into ``x`` at the same positions. Cell ``(i, j)`` covers the pixels between the integer
    boundaries of :func:`cell_boundaries`. The label weight of the receiving image is its
    kept pixel fraction

    .. math::
        \\lambda_n = 1 - \\frac{|\\text{pasted pixels}_n|}{H W}
        \\;=\\; 1 - \\frac{N_{top}}{g^2} \\quad (\\text{g divides H and W})

    so the partner's label ``y_b`` gets :math:`N_{top}/g^2` as in the paper (which pastes
    the patches of image A into image B and gives A weight :math:`N/g^2`). For divisible
    grids ``lam`` is a float; otherwise the cells differ in size and ``lam`` is an ``(N,)``
    tensor. Paper setting: ResNet-50 extractor, 224-pixel images, ``grid=7``, ``top_k=6``;
    for 32-pixel images ``grid=8`` (4-pixel cells) has been used.

    The extractor is put in eval mode with ``requires_grad=False``, run under
    ``torch.no_grad()`` and moved to the batch's device on first use. It is kept off any
    ``nn.Module`` (this class is a plain object), so it never joins a model's optimiser or
    ``state_dict``.

    Args:
        extractor: frozen feature extractor (``nn.Module`` or callable).
        grid: cells per side ``g``.
        top_k: number of pasted cells ``N_top`` (``1 <= top_k <= grid**2``).
        prob: probability of mixing a batch; otherwise ``(x, y, y, 1.0)`` is returned.
        input_size: if given, the batch is bilinearly resized to this size before the
            extractor sees it (e.g. 224 for an ImageNet extractor on CIFAR images).
        generator: default random generator for the permutation and ``prob``.

        >>> mixer = AttentiveCutMix(resnet50_trunk, grid=7, top_k=6)
        >>> mixed, y_a, y_b, lam = mixer(x, y)   # lam == 1 - 6/49 on 224x224 inputs
    """

    def __init__(
        self,
        extractor,
        grid: int = 7,
        top_k: int = 6,
        prob: float = 1.0,
        input_size: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(prob, generator)
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        if not 1 <= top_k <= grid * grid:
            raise ValueError(f"top_k must be in [1, grid**2 = {grid * grid}], got {top_k}")
        if not callable(extractor):
            raise TypeError(f"extractor must be callable, got {type(extractor).__name__}")
        self.grid, self.top_k, self.input_size = int(grid), int(top_k), input_size
        self.extractor = extractor
        if isinstance(extractor, nn.Module):
            extractor.eval()
            extractor.requires_grad_(False)

    def _features(self, x: Tensor) -> Tensor:
        ext = self.extractor
        if isinstance(ext, nn.Module):
            ext.eval()
            ref = next(iter(ext.parameters()), None)
            if ref is None:
                ref = next(iter(ext.buffers()), None)
            if ref is not None and ref.device != x.device:
                ext.to(x.device)
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size,) * 2:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        fn = getattr(ext, "forward_features", None)
        feats = fn(x) if callable(fn) else ext(x)
        if not isinstance(feats, Tensor) or feats.dim() != 4:
            shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
            raise ValueError(
                f"Attentive CutMix extractor must return a feature map (N, C, h, w), got {shape}"
            )
        return feats

    @torch.no_grad()
    def attention(self, x: Tensor) -> Tensor:
        """Channel-averaged attention map ``(N, grid, grid)`` of a batch."""
        feats = self._features(x).float()
        if feats.shape[-2:] != (self.grid, self.grid):
            feats = F.adaptive_avg_pool2d(feats, self.grid)
        return feats.mean(dim=1)

    def cell_mask(self, attention: Tensor) -> Tensor:
        """Boolean ``(N, grid, grid)`` mask of each map's ``top_k`` cells."""
        n = attention.shape[0]
        top = attention.reshape(n, -1).topk(self.top_k, dim=1).indices
        mask = torch.zeros(n, self.grid * self.grid, dtype=torch.bool, device=attention.device)
        mask.scatter_(1, top, True)
        return mask.reshape(n, self.grid, self.grid)

    def pixel_mask(self, cells: Tensor, height: int, width: int) -> Tensor:
        """Expand a ``(N, g, g)`` cell mask to a ``(N, H, W)`` pixel mask."""
        dev = cells.device
        rb, cb = cell_boundaries(height, self.grid), cell_boundaries(width, self.grid)
        row_cell = torch.bucketize(torch.arange(height), rb[1:-1], right=True).to(dev)
        col_cell = torch.bucketize(torch.arange(width), cb[1:-1], right=True).to(dev)
        return cells[:, row_cell[:, None], col_cell[None, :]]

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        gen = generator if generator is not None else self.generator
        if x.dim() != 4:
            raise ValueError(f"AttentiveCutMix expects images (N, C, H, W), got shape {tuple(x.shape)}")
        if self._skip(gen):
            return x, y, y, 1.0
        n, _, h, w = x.shape
        perm = self._perm(n, gen, x.device)
        partner = x[perm]
        cells = self.cell_mask(self.attention(partner)).to(x.device)
        mask = self.pixel_mask(cells, h, w)
        mixed = torch.where(mask[:, None], partner, x)
        if h % self.grid == 0 and w % self.grid == 0:
            lam: Lam = 1.0 - self.top_k / (self.grid * self.grid)
        else:
            lam = 1.0 - mask.flatten(1).float().mean(dim=1)
        return mixed, y, y[perm], lam

    def __repr__(self) -> str:
        return f"AttentiveCutMix(grid={self.grid}, top_k={self.top_k}, prob={self.prob})"
