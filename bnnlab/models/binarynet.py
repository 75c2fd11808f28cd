"""BinaryNet: the CIFAR-10 VGG of Courbariaux et al., as trained with Bop.

Courbariaux, Hubara, Soudry, El-Yaniv, Bengio, "Binarized Neural Networks: Training Deep
Neural Networks with Weights and Activations Constrained to +1 or -1", NeurIPS 2016
(arXiv:1602.02830); the Bop variant of Helwegen et al., "Latent Weights Do Not Exist:
Rethinking Binarized Neural Network Optimization", NeurIPS 2019 (arXiv:1906.02107).

Layout (as larq's BinaryNet example and the Bop code)::

    128C3 (valid) - BN - 128C3 - MP2 - BN - 256C3 - BN - 256C3 - MP2 - BN
    - 512C3 - BN - 512C3 - MP2 - BN - 1024FC - BN - 1024FC - BN - (classes)FC - BN

Every conv and dense layer has binary weights (``weight``, default ``"sign"``) and no bias;
every layer but the first binarizes its input (``activation``, default ``"ste"``); the
first conv sees the real image (its ``input_quantizer`` is ``"real"``) and so costs FLOPs,
not BOPs. There is no other nonlinearity: the sign *is* the activation. BatchNorm has no
learnable scale (Keras ``scale=False``), implemented as a non-affine BatchNorm plus a
learnable ``bias`` (:class:`~bnnlab.models._common.BatchNormNoScale2d`), so the only real
parameters are the BN shifts. Logits are the last BN's output.

Note: :func:`bnnlab.binary.set_quantizers` changes every binary layer, including the first
conv; pass ``only=`` to keep the image input real.
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.binary import BinaryConv2d, BinaryLinear
from bnnlab.models._common import (
    BatchNormNoScale1d,
    BatchNormNoScale2d,
    BnnModel,
    check_input_size,
    check_positive_int,
    scale_width,
)
from bnnlab.models._registry import register_model

__all__ = ["BinaryNet"]

BINARYNET_PAPER = ("Courbariaux et al., Binarized Neural Networks, NeurIPS 2016, arXiv:1602.02830; "
                   "Bop: Helwegen et al., Latent Weights Do Not Exist, NeurIPS 2019, arXiv:1906.02107")


class BinaryNet(BnnModel):
    """BinaryNet VGG (see the module docstring); ``channels``/``units`` are width-scaled."""

    def __init__(self, channels=(128, 256, 512), units=1024, *, num_classes=10, in_channels=3,
                 input_size=32, activation="ste", weight="sign"):
        super().__init__()
        self.input_size, self.in_channels = input_size, in_channels
        c1, c2, c3 = channels
        kw = dict(bias=False, input_quantizer=activation, weight_quantizer=weight)
        self.features = nn.Sequential(
            BinaryConv2d(in_channels, c1, 3, padding=0, bias=False, input_quantizer="real",
                         weight_quantizer=weight),
            BatchNormNoScale2d(c1),
            BinaryConv2d(c1, c1, 3, padding=1, **kw), nn.MaxPool2d(2), BatchNormNoScale2d(c1),
            BinaryConv2d(c1, c2, 3, padding=1, **kw), BatchNormNoScale2d(c2),
            BinaryConv2d(c2, c2, 3, padding=1, **kw), nn.MaxPool2d(2), BatchNormNoScale2d(c2),
            BinaryConv2d(c2, c3, 3, padding=1, **kw), BatchNormNoScale2d(c3),
            BinaryConv2d(c3, c3, 3, padding=1, **kw), nn.MaxPool2d(2), BatchNormNoScale2d(c3),
        )
        side = (input_size - 2) // 8
        self.num_features = c3
        self.classifier = nn.Sequential(
            BinaryLinear(c3 * side * side, units, **kw), BatchNormNoScale1d(units),
            BinaryLinear(units, units, **kw), BatchNormNoScale1d(units),
            BinaryLinear(units, num_classes, **kw), BatchNormNoScale1d(num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(features, 1))


@register_model("binarynet", paper=BINARYNET_PAPER, proxy=dict(width=0.25))
def binarynet(*, num_classes=10, in_channels=3, input_size=32, width=1.0, activation="ste",
              weight="sign") -> BinaryNet:
    """BinaryNet: CIFAR-10 VGG with binary weights everywhere and BN without scale."""
    check_input_size("binarynet", input_size, minimum=10)
    check_positive_int("binarynet", "num_classes", num_classes)
    check_positive_int("binarynet", "in_channels", in_channels)
    channels = tuple(scale_width(c, width) for c in (128, 256, 512))
    return BinaryNet(channels, scale_width(1024, width), num_classes=num_classes,
                     in_channels=in_channels, input_size=input_size, activation=activation, weight=weight)
