"""Binary layers: :class:`BinaryConv2d`, :class:`BinaryLinear`, and ReActNet's
:class:`RSign` and :class:`RPReLU`.

A binary layer keeps a real-valued latent weight and applies two quantizers in its
forward pass: one to its input (``input_quantizer``, e.g. ``"approx"``) and one to its
weight (``weight_quantizer``, e.g. ``"scaled"``). With both set to ``"real"`` the layer
is an ordinary conv/linear layer, which lets one architecture serve as its own real-valued
teacher or initialiser and lets a multi-step recipe change binarization without changing
parameter names.

    >>> conv = BinaryConv2d(64, 64, 3, padding=1, input_quantizer="approx",
    ...                     weight_quantizer="scaled")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bnnlab.binary.quantizers import make_activation, make_weight_quantizer, sign

__all__ = [
    "QuantLayer",
    "BinaryConv2d",
    "BinaryLinear",
    "RSign",
    "RPReLU",
    "binary_weights",
    "split_parameters",
    "set_quantizers",
    "snap_binary_weights",
]


class QuantLayer:
    """Mixin for layers with ``input_quantizer`` and ``weight_quantizer``."""

    input_quantizer: nn.Module
    weight_quantizer: nn.Module

    @property
    def has_binary_weight(self) -> bool:
        return bool(getattr(self.weight_quantizer, "is_binary", False))

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.weight)


class BinaryConv2d(nn.Conv2d, QuantLayer):
    """Conv2d on binarized inputs with binarized weights.

    ``y = conv(q_a(x), q_w(W))`` where ``q_a`` is the input quantizer and ``q_w`` the
    weight quantizer (names from :data:`~bnnlab.binary.ACTIVATIONS` /
    :data:`~bnnlab.binary.WEIGHTS`, or modules such as :class:`RSign`). With
    ``weight_quantizer="sign"`` it is the XNOR/popcount layer of BinaryNet
    (Courbariaux et al. 2016); with ``"scaled"`` Bi-Real's magnitude-aware layer.
    Padding is with zeros after binarizing the input, as in the official code.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=False, input_quantizer="ste",
                 weight_quantizer="sign", zero="pos"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias)
        self.input_quantizer = make_activation(input_quantizer, zero)
        self.weight_quantizer = make_weight_quantizer(weight_quantizer, zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(x), self.quantized_weight(), self.bias)


class BinaryLinear(nn.Linear, QuantLayer):
    """Linear layer on binarized inputs with binarized weights: ``y = q_a(x) q_w(W)^T + b``."""

    def __init__(self, in_features, out_features, bias=False, input_quantizer="ste",
                 weight_quantizer="sign", zero="pos"):
        super().__init__(in_features, out_features, bias)
        self.input_quantizer = make_activation(input_quantizer, zero)
        self.weight_quantizer = make_weight_quantizer(weight_quantizer, zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.quantized_weight(), self.bias)


class RSign(nn.Module):
    r"""ReActNet's ReAct-Sign: a sign with a learnable per-channel threshold.

    .. math:: x_b = \mathrm{sign}(x_c - \alpha_c)

    The gradient of the sign is ``quantizer``'s (default ``"approx"``, as the official
    code). Liu et al., "ReActNet", ECCV 2020 (arXiv:2003.03488), eq. 2.
    """

    is_binary = True

    def __init__(self, channels: int, quantizer: str = "approx", zero: str = "pos"):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.quantizer = make_activation(quantizer, zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha if x.dim() == 4 else self.alpha.view(1, -1)
        return self.quantizer(x - alpha)


class RPReLU(nn.Module):
    r"""ReActNet's ReAct-PReLU: a PReLU with learnable input and output shifts.

    .. math:: f(x_c) = \begin{cases} x_c - \gamma_c + \zeta_c & x_c > \gamma_c \\
              \beta_c (x_c - \gamma_c) + \zeta_c & \text{otherwise} \end{cases}

    :math:`\beta` starts at 0.25 (PReLU), the shifts at 0. ReActNet eq. 3.
    """

    def __init__(self, channels: int, init_slope: float = 0.25):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.zeta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.full((1, channels, 1, 1), init_slope))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) if x.dim() == 2 else (1, -1, 1, 1)
        y = x - self.gamma.view(shape)
        return torch.where(y > 0, y, self.beta.view(shape) * y) + self.zeta.view(shape)


# --------------------------------------------------------------------------- model helpers


def _quant_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            yield name, m


def binary_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every weight that a binary weight quantizer binarizes."""
    return [(f"{n}.weight" if n else "weight", m.weight)
            for n, m in _quant_layers(model) if m.has_binary_weight]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split trainable parameters into (binary weights, everything else).

    Binary weights go to :class:`~bnnlab.binary.Bop`; every real-valued parameter
    (BatchNorm, first and last layers, biases, RSign/RPReLU) goes to a second optimizer.
    Frozen parameters (``requires_grad=False``) are left out of both lists.
    """
    binary_ids = {id(p) for _, p in binary_weights(model)}
    binary, other = [], []
    for p in model.parameters():
        if p.requires_grad:
            (binary if id(p) in binary_ids else other).append(p)
    return binary, other


def set_quantizers(model: nn.Module, activation: str | None = None,
                   weight: str | None = None, only: Iterable[str] | None = None) -> None:
    """Swap the quantizers of every binary layer in place (for multi-step training).

    ``only`` restricts the change to the given module names (as in ``named_modules()``).
    Parameter names and shapes never change, so ``state_dict`` keys stay the same. RSign
    modules keep their threshold and get the new activation's gradient.
    """
    names = set(only) if only is not None else None
    for name, m in _quant_layers(model):
        if names is not None and name not in names:
            continue
        if activation is not None:
            q = m.input_quantizer
            if isinstance(q, RSign):
                q.quantizer = make_activation(activation, q.quantizer.zero)
            else:
                m.input_quantizer = make_activation(activation, getattr(q, "zero", "pos"))
        if weight is not None:
            m.weight_quantizer = make_weight_quantizer(weight, getattr(m.weight_quantizer, "zero", "pos"))


@torch.no_grad()
def snap_binary_weights(model: nn.Module) -> int:
    """Overwrite every binary latent weight with its sign (exact +-1); returns the count."""
    n = 0
    for _, p in binary_weights(model):
        p.copy_(sign(p))
        n += p.numel()
    return n
