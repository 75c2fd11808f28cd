"""Sign functions, activation binarizers and weight binarizers, with their gradients.

Every binarizer is a custom :class:`torch.autograd.Function` that saves one input-sized
tensor (the input itself; the magnitude-aware sign also keeps its per-channel scale) and
computes its gradient with few in-place elementwise passes (the clipped STE in a single
fused ``hardtanh_backward`` kernel), with no ``detach`` chains. The detach-trick
form used by the official Bi-Real Net / ReActNet PyTorch code is kept as
``"approx-detach"`` for fidelity checks and benchmarks.

Two registries hold the names recipes and the CLI use:

* :data:`ACTIVATIONS` -- what happens to a layer's *input*: ``"ste"``, ``"approx"``,
  ``"approx-detach"`` (binary) and ``"real"``, ``"relu"``, ``"clip"``, ``"leaky-clip"``
  (real-valued, for teachers and Bi-Real's initialisation study).
* :data:`WEIGHTS` -- what happens to a layer's *weight*: ``"sign"``, ``"scaled"``
  (Bi-Real's magnitude-aware sign, paper gradient), ``"scaled-official"`` (official
  PyTorch gradient) and ``"real"`` (no binarization).
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "WEIGHTS",
    "sign",
    "ste_sign",
    "approx_sign",
    "approx_sign_detach",
    "sign_weight",
    "magnitude_aware_sign",
    "ActivationQuantizer",
    "WeightQuantizer",
    "make_activation",
    "make_weight_quantizer",
]

ZERO_MODES = ("pos", "torch")


def sign(x: torch.Tensor, zero: str = "pos") -> torch.Tensor:
    """Sign with a defined value at zero.

    ``zero="pos"`` (default, as larq and bitorch): sign(0) = +1, so the output is
    strictly binary. ``zero="torch"``: torch's convention sign(0) = 0, which the official
    Bi-Real/ReActNet code inherits; it makes activations ternary and blocks Bop flips.
    The output has ``x``'s dtype.
    """
    if zero == "pos":
        if not x.is_floating_point():
            return torch.where(x >= 0, 1, -1).to(x.dtype)
        # sign(sign(x) + 1/2): three vectorised in-place passes, much faster on CPU than
        # torch.where(x >= 0, 1, -1) (whose kernel is not vectorised); 0 and -0 map to +1.
        return torch.sign(x).add_(0.5).sign_()
    if zero == "torch":
        return torch.sign(x)
    raise ValueError(f"zero must be one of {ZERO_MODES}, got {zero!r}")


def _clip_grad(g: torch.Tensor, x: torch.Tensor, inclusive: bool = True) -> torch.Tensor:
    """``g * 1{|x| <= 1}`` (``inclusive``) or ``g * 1{|x| < 1}`` in one fused kernel.

    ``hardtanh_backward(g, x, lo, hi)`` keeps ``g`` where ``lo < x < hi``; for the
    inclusive bound, ``hi`` is the next representable number above 1 in ``x``'s dtype.
    """
    if g.dtype != x.dtype:
        x = x.to(g.dtype)
    bound = 1.0 + torch.finfo(x.dtype).eps if inclusive else 1.0
    return torch.ops.aten.hardtanh_backward(g, x, -bound, bound)


def _approx_grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``g * (2 - 2|x|) * 1{|x| <= 1}``: one allocation, in-place passes."""
    t = x.abs()
    if t.dtype != g.dtype:
        t = t.to(g.dtype)
    return t.mul_(-2.0).add_(2.0).clamp_(min=0.0).mul_(g)


class _SteSign(torch.autograd.Function):
    """Forward sign(x); backward g * 1{|x| <= 1} (clipped identity, BinaryNet)."""

    @staticmethod
    def forward(ctx, x, zero="pos"):
        ctx.save_for_backward(x)
        return sign(x, zero)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _clip_grad(g, x), None


class _ApproxSign(torch.autograd.Function):
    """Forward sign(x); backward g * (2 - 2|x|) * 1{|x| <= 1} (Bi-Real ApproxSign)."""

    @staticmethod
    def forward(ctx, x, zero="pos"):
        ctx.save_for_backward(x)
        return sign(x, zero)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _approx_grad(g, x), None


def ste_sign(x: torch.Tensor, zero: str = "pos") -> torch.Tensor:
    r"""Sign with the straight-through estimator.

    .. math:: q(x) = \mathrm{sign}(x), \qquad
              \frac{\partial q}{\partial x} = 1_{|x| \le 1}

    Courbariaux et al., "Binarized Neural Networks", NeurIPS 2016 (arXiv:1602.02830).
    """
    return _SteSign.apply(x, zero)


def approx_sign(x: torch.Tensor, zero: str = "pos") -> torch.Tensor:
    r"""Sign with Bi-Real Net's piecewise-polynomial gradient.

    The backward pass differentiates
    :math:`F(x) = -1\ (x<-1);\ x^2+2x\ (-1 \le x<0);\ 2x-x^2\ (0 \le x<1);\ 1\ (x \ge 1)`:

    .. math:: \frac{\partial q}{\partial x} = (2 - 2|x|)\, 1_{|x| \le 1}

    Liu et al., "Bi-Real Net", ECCV 2018 (arXiv:1808.00278), eq. 5.
    """
    return _ApproxSign.apply(x, zero)


def _approx_poly(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real's F(x) written as the official code does (three masks)."""
    m1 = (x < -1).to(x.dtype)
    m2 = (x < 0).to(x.dtype)
    m3 = (x < 1).to(x.dtype)
    out = -1 * m1 + (x * x + 2 * x) * (1 - m1)
    out = out * m2 + (-x * x + 2 * x) * (1 - m2)
    return out * m3 + 1 * (1 - m3)


def approx_sign_detach(x: torch.Tensor, zero: str = "torch") -> torch.Tensor:
    """ApproxSign as in the official Bi-Real/ReActNet PyTorch code (detach trick).

    ``sign(x).detach() - F(x).detach() + F(x)``; same gradient as :func:`approx_sign`
    but several elementwise passes and saved tensors. Defaults to torch's sign(0) = 0
    like the official code. Kept for fidelity checks and as the benchmark reference.
    """
    f = _approx_poly(x)
    return sign(x, zero).detach() - f.detach() + f


class _SignWeight(torch.autograd.Function):
    """Forward sign(w); backward g * 1{|w| <= 1}."""

    @staticmethod
    def forward(ctx, w, zero="pos"):
        ctx.save_for_backward(w)
        return sign(w, zero)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return _clip_grad(g, w), None


def _channel_scale(w: torch.Tensor) -> torch.Tensor:
    """Mean absolute value per output channel (dim 0), broadcastable to ``w``."""
    if w.dim() == 1:
        return w.abs().mean().expand(1)
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class _MagnitudeAwareSign(torch.autograd.Function):
    """Forward alpha * sign(w), alpha = mean|w| per output channel.

    ``grad="paper"``: g * alpha * 1{|w| < 1} (Bi-Real eq. 7, larq MagnitudeAwareSign).
    ``grad="official"``: g * 1{|w| <= 1} (official HardBinaryConv: the scale is detached
    and the clip-STE is applied to the raw weight).
    """

    @staticmethod
    def forward(ctx, w, grad="paper", zero="pos"):
        scale = _channel_scale(w)
        ctx.save_for_backward(w, scale)  # scale is one number per output channel
        ctx.grad_mode = grad
        return sign(w, zero).mul_(scale)

    @staticmethod
    def backward(ctx, g):
        w, scale = ctx.saved_tensors
        if ctx.grad_mode == "paper":
            return _clip_grad(g, w, inclusive=False).mul_(scale.to(g.dtype)), None, None
        return _clip_grad(g, w), None, None


def sign_weight(w: torch.Tensor, zero: str = "pos") -> torch.Tensor:
    r"""Plain binary weights :math:`w_b = \mathrm{sign}(w)` with clipped-STE gradient
    :math:`1_{|w| \le 1}` (BinaryNet; with Bop the weights already are :math:`\pm 1`)."""
    return _SignWeight.apply(w, zero)


def magnitude_aware_sign(w: torch.Tensor, grad: str = "paper", zero: str = "pos") -> torch.Tensor:
    r"""Bi-Real Net's magnitude-aware weight binarization.

    .. math:: w_b = \frac{\lVert W_c \rVert_1}{n_c}\, \mathrm{sign}(w), \qquad
              \frac{\partial w_b}{\partial w} \approx \frac{\lVert W_c \rVert_1}{n_c}\, 1_{|w|<1}

    per output channel c (``grad="paper"``; Liu et al. ECCV 2018, eq. 7). The official
    PyTorch code's gradient is :math:`1_{|w| \le 1}` without the scale (``grad="official"``).
    """
    if grad not in ("paper", "official"):
        raise ValueError(f"grad must be 'paper' or 'official', got {grad!r}")
    return _MagnitudeAwareSign.apply(w, grad, zero)


# --------------------------------------------------------------------------- modules


class ActivationQuantizer(nn.Module):
    """Applies an activation function to a layer's input; ``is_binary`` says if it binarizes."""

    is_binary = True

    def __init__(self, name: str, zero: str = "pos"):
        super().__init__()
        self.name, self.zero = name, zero

    def extra_repr(self) -> str:
        return self.name


class _Ste(ActivationQuantizer):
    def forward(self, x):
        return ste_sign(x, self.zero)


class _Approx(ActivationQuantizer):
    def forward(self, x):
        return approx_sign(x, self.zero)


class _ApproxDetach(ActivationQuantizer):
    def __init__(self, name: str, zero: str = "torch"):
        super().__init__(name, zero)

    def forward(self, x):
        return approx_sign_detach(x, self.zero)


class _RealActivation(ActivationQuantizer):
    is_binary = False
    _fns = {
        "real": lambda x: x,
        "relu": torch.relu,
        "clip": lambda x: torch.clamp(x, -1.0, 1.0),
        # clip(-1, x, 1) with a 0.1 slope outside [-1, 1] (Bi-Real IJCV init study)
        "leaky-clip": lambda x: torch.clamp(x, -1.0, 1.0) + 0.1 * (x - torch.clamp(x, -1.0, 1.0)),
    }

    def forward(self, x):
        return self._fns[self.name](x)


ACTIVATIONS: Registry[type[ActivationQuantizer]] = Registry("activation binarizer")
ACTIVATIONS.register("ste")(_Ste)
ACTIVATIONS.register("approx")(_Approx)
ACTIVATIONS.register("approx-detach")(_ApproxDetach)
for _n in _RealActivation._fns:
    ACTIVATIONS.register(_n)(_RealActivation)


class WeightQuantizer(nn.Module):
    """Maps a latent weight to the weight the layer uses; ``is_binary`` marks binary weights."""

    is_binary = True

    def __init__(self, name: str, zero: str = "pos"):
        super().__init__()
        self.name, self.zero = name, zero

    def extra_repr(self) -> str:
        return self.name


class _SignW(WeightQuantizer):
    def forward(self, w):
        return sign_weight(w, self.zero)


class _ScaledW(WeightQuantizer):
    grad = "paper"

    def forward(self, w):
        return magnitude_aware_sign(w, self.grad, self.zero)


class _ScaledOfficialW(_ScaledW):
    grad = "official"


class _RealW(WeightQuantizer):
    is_binary = False

    def forward(self, w):
        return w


WEIGHTS: Registry[type[WeightQuantizer]] = Registry("weight binarizer")
WEIGHTS.register("sign")(_SignW)
WEIGHTS.register("scaled")(_ScaledW)
WEIGHTS.register("scaled-official")(_ScaledOfficialW)
WEIGHTS.register("real")(_RealW)


def make_activation(spec: str | nn.Module | None, zero: str | None = None) -> nn.Module:
    """Build an activation quantizer from a registry name (a module passes through)."""
    if isinstance(spec, nn.Module):
        return spec
    spec = "real" if spec is None else spec
    cls = ACTIVATIONS.get(spec)
    return cls(spec) if zero is None else cls(spec, zero)


def make_weight_quantizer(spec: str | nn.Module | None, zero: str = "pos") -> nn.Module:
    """Build a weight quantizer from a registry name (a module passes through)."""
    if isinstance(spec, nn.Module):
        return spec
    spec = "real" if spec is None else spec
    return WEIGHTS.get(spec)(spec, zero)
