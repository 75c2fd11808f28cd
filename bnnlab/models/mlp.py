"""Small multilayer perceptrons for the bundled 8x8 digits data (64 inputs, 10 classes).

``binary-mlp`` (BinaryNet's MLP in miniature; Courbariaux et al., "Binarized Neural
Networks", NeurIPS 2016, arXiv:1602.02830)::

    flatten -> real Linear(in, hidden) -> BN
            -> [binary Linear(hidden, hidden) -> BN] x depth      (sign inside each layer)
            -> real Linear(hidden, classes)

``mlp`` is the same network with ``activation="relu"`` and ``weight="real"``: a
real-valued teacher with exactly the parameter names of ``binary-mlp``. Any input shape
is flattened; ``in_features = in_channels * input_size**2``.
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.binary import BinaryLinear
from bnnlab.models._common import BnnModel, check_input_size, check_positive_int, scale_width
from bnnlab.models._registry import register_model

__all__ = ["MLP"]

MLP_PAPER = ("Courbariaux et al., Binarized Neural Networks, NeurIPS 2016, arXiv:1602.02830 "
             "(small CPU model, not from the paper)")


class _HiddenLayer(nn.Module):
    def __init__(self, features: int, activation: str, weight: str):
        super().__init__()
        self.fc = BinaryLinear(features, features, bias=False, input_quantizer=activation,
                               weight_quantizer=weight)
        self.bn = nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


class MLP(BnnModel):
    """See the module docstring. ``forward_features`` gives the last hidden BN output (N, hidden)."""

    def __init__(self, *, num_classes=10, in_channels=1, input_size=8, hidden=256, depth=2,
                 activation="approx", weight="scaled"):
        super().__init__()
        self.input_size, self.in_channels = input_size, in_channels
        self.fc_in = nn.Linear(in_channels * input_size * input_size, hidden, bias=False)
        self.bn_in = nn.BatchNorm1d(hidden)
        self.hidden = nn.Sequential(*[_HiddenLayer(hidden, activation, weight) for _ in range(depth)])
        self.num_features = hidden
        self.fc = nn.Linear(hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.bn_in(self.fc_in(torch.flatten(x, 1))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


def _build(name, *, num_classes, in_channels, input_size, width, hidden, depth, activation, weight):
    check_input_size(name, input_size)
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "in_channels", in_channels)
    check_positive_int(name, "hidden", hidden)
    check_positive_int(name, "depth", depth, minimum=0)
    return MLP(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
               hidden=scale_width(hidden, width), depth=depth, activation=activation, weight=weight)


@register_model("binary-mlp", paper=MLP_PAPER, proxy=dict(hidden=64))
def binary_mlp(*, num_classes=10, in_channels=1, input_size=8, width=1.0, hidden=256, depth=2,
               activation="approx", weight="scaled") -> MLP:
    """Binary MLP for 8x8 digits: real first and last layer, ``depth`` binary hidden layers."""
    return _build("binary-mlp", **locals())


@register_model("mlp", paper=MLP_PAPER, proxy=dict(hidden=64))
def mlp(*, num_classes=10, in_channels=1, input_size=8, width=1.0, hidden=256, depth=2,
        activation="relu", weight="real") -> MLP:
    """Real-valued MLP for 8x8 digits (ReLU, real weights): teacher with binary-mlp's parameter names."""
    return _build("mlp", **locals())
