"""Shared pieces of the model zoo: the :class:`BnnModel` interface, width scaling,
BatchNorm without scale, and small argument checks.

Every model in :mod:`bnnlab.models` subclasses :class:`BnnModel` and so offers

* ``forward_features(x)``: the last feature map before global pooling, ``(N, C, H, W)``
  for conv nets, ``(N, D)`` for MLPs;
* ``forward_head(features)``: pooling, flatten and classifier, giving logits;
* ``forward(x) = forward_head(forward_features(x))``;
* ``num_features`` (``C`` or ``D`` above), ``input_size`` and ``in_channels``;
* ``binary_parameters()``: the ``(name, parameter)`` pairs that a binary weight
  quantizer binarizes (what :class:`~bnnlab.binary.Bop` trains).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnnlab.binary import ACTIVATIONS, RPReLU, RSign, binary_weights
from bnnlab.errors import BnnlabError

__all__ = [
    "BnnModel",
    "BatchNormNoScale1d",
    "BatchNormNoScale2d",
    "scale_width",
    "check_choice",
    "check_input_size",
    "activation_is_binary",
    "input_quantizer",
    "make_post_activation",
    "shortcut_pool",
    "resolve_stem",
]


class BnnModel(nn.Module):
    """Base class of every zoo model (see the module docstring for the interface).

    Subclasses set ``num_features`` and implement :meth:`forward_features`; the default
    :meth:`forward_head` is global average pooling, flatten and ``self.fc``.
    """

    num_features: int
    input_size: int
    in_channels: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 4:
            features = F.adaptive_avg_pool2d(features, 1)
        return self.fc(torch.flatten(features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def binary_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every binary weight (see :func:`bnnlab.binary.binary_weights`)."""
        return binary_weights(self)


class _NoScaleMixin:
    """BatchNorm with a learnable shift but no learnable scale (Keras ``scale=False``).

    Built as a non-affine BatchNorm plus a ``bias`` parameter, so ``weight`` is ``None``
    and the module has one parameter per channel. BinaryNet (Courbariaux et al. 2016)
    and larq's BinaryNet / BinaryAlexNet use this: a positive scale before a sign is
    irrelevant to the sign and only shifts matter.
    """

    def _add_bias(self, num_features: int) -> None:
        self.bias = nn.Parameter(torch.zeros(num_features))


class BatchNormNoScale2d(nn.BatchNorm2d, _NoScaleMixin):
    __doc__ = _NoScaleMixin.__doc__

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self._add_bias(num_features)


class BatchNormNoScale1d(nn.BatchNorm1d, _NoScaleMixin):
    __doc__ = _NoScaleMixin.__doc__

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self._add_bias(num_features)


def scale_width(channels: int, width: float, minimum: int = 4) -> int:
    """``round(channels * width)``, at least ``minimum`` (and never more than asked for
    when ``channels`` itself is below ``minimum``)."""
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise BnnlabError(f"width must be a positive number, got {width!r}")
    return max(min(minimum, channels), int(round(channels * width)))


def check_choice(model: str, option: str, value, choices) -> None:
    """Raise a one-line :class:`BnnlabError` if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise BnnlabError(
            f"model '{model}': {option}={value!r} is not one of {', '.join(map(repr, choices))}"
        )


def check_input_size(model: str, input_size, minimum: int = 1) -> int:
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < minimum:
        raise BnnlabError(f"model '{model}': input_size must be an integer >= {minimum}, got {input_size!r}")
    return input_size


def check_positive_int(model: str, option: str, value, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BnnlabError(f"model '{model}': {option} must be an integer >= {minimum}, got {value!r}")
    return value


def activation_is_binary(name) -> bool:
    """Whether an activation-quantizer name (or module) binarizes (validates the name)."""
    if isinstance(name, nn.Module):
        return bool(getattr(name, "is_binary", False))
    return bool(ACTIVATIONS.get(name).is_binary)


def input_quantizer(activation: str, channels: int, rsign: bool) -> str | nn.Module:
    """A binary conv's input quantizer: ReActNet's :class:`RSign` (learnable threshold)
    when ``rsign`` is true, else the plain activation-quantizer name."""
    ACTIVATIONS.get(activation)  # fail early with the registry's did-you-mean
    return RSign(channels, activation) if rsign else activation


RPRELU_CHOICES = ("rprelu", "prelu", "none")


def make_post_activation(kind: str, channels: int) -> nn.Module:
    """ReActNet's activation after a shortcut add: ``"rprelu"`` (:class:`RPReLU`),
    ``"prelu"`` (``nn.PReLU`` per channel) or ``"none"`` (identity, Bi-Real)."""
    if kind == "rprelu":
        return RPReLU(channels)
    if kind == "prelu":
        return nn.PReLU(channels, init=0.25)
    return nn.Identity()


def shortcut_pool() -> nn.Module:
    """The 2x2 average pooling of a stride-2 shortcut.

    ``ceil_mode=True`` so that shapes match a stride-2, padding-1 conv for odd sizes as
    well (identical to ``AvgPool2d(2)`` for even sizes, i.e. at the papers' resolutions).
    """
    return nn.AvgPool2d(2, ceil_mode=True)


STEM_CHOICES = ("imagenet", "cifar")


def resolve_stem(model: str, stem: str | None, input_size: int) -> str:
    """``stem=None`` picks ``"imagenet"`` for inputs above 64 pixels, else ``"cifar"``."""
    if stem is None:
        return "imagenet" if input_size > 64 else "cifar"
    check_choice(model, "stem", stem, STEM_CHOICES)
    return stem
