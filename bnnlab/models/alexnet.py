"""Binary AlexNets: the Bop paper's binary AlexNet and XNOR-Net's AlexNet.

Both use torchvision's AlexNet geometry (11x11/4 conv with padding 2, 3x3/2 max pools,
so a 224-pixel input gives a 6x6x256 feature map) with the channel counts of the binary
papers (64-192-384-384-256, or XNOR-Net's 96-256-384-384-256) and two 4096-unit dense
layers. The first conv and the last FC are real-valued in both; ``input_size`` sizes the
first dense layer (inputs from 63 pixels up work).

``alexnet-binary`` (Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized
Neural Network Optimization", NeurIPS 2019, arXiv:1906.02107; layout of larq zoo's
BinaryAlexNet)::

    conv -> [maxpool] -> BN   for each of the 5 convs (conv 1 real, convs 2-5 binary)
    binary FC 4096 -> BN -> binary FC 4096 -> BN -> real FC (classes)

BatchNorm has no learnable scale (Keras ``scale=False``). larq zoo also binarizes the
first conv's weights and the last FC; here both stay real, as the Bop ImageNet table's
convention for first and last layers.

``xnornet`` (Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using
Binary Convolutional Neural Networks", ECCV 2016, arXiv:1603.05279), block order of the
paper's Fig. 3 and of the reference PyTorch port::

    real conv1 -> BN -> ReLU -> maxpool
    [BN -> sign -> binary conv (scaled weights) -> ReLU] x 4 (with maxpools after 1 and 4)
    [BN -> sign -> binary FC -> ReLU] x 2 -> BN -> ReLU -> real FC

The activation scale K of the paper is omitted (as in the reference port).
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.binary import BinaryConv2d, BinaryLinear
from bnnlab.errors import BnnlabError
from bnnlab.models._common import (
    BatchNormNoScale1d,
    BatchNormNoScale2d,
    BnnModel,
    check_input_size,
    check_positive_int,
    scale_width,
)
from bnnlab.models._registry import register_model

__all__ = ["BinaryAlexNet", "XnorAlexNet", "XnorConv", "XnorLinear"]

BOP_PAPER = ("Helwegen et al., Latent Weights Do Not Exist: Rethinking Binarized Neural Network "
             "Optimization, NeurIPS 2019, arXiv:1906.02107")
XNOR_PAPER = ("Rastegari et al., XNOR-Net: ImageNet Classification Using Binary Convolutional Neural "
              "Networks, ECCV 2016, arXiv:1603.05279")


def feature_side(name: str, input_size: int) -> int:
    """Side of the last feature map: conv 11/4 p2, pool, conv, pool, 3 convs, pool."""
    check_input_size(name, input_size)
    side = (input_size + 4 - 11) // 4 + 1
    for _ in range(3):
        if side < 3:
            raise BnnlabError(f"model '{name}': input_size={input_size} is too small "
                              "(AlexNet needs at least 63 pixels)")
        side = (side - 3) // 2 + 1
    return side


class BinaryAlexNet(BnnModel):
    """The Bop paper's binary AlexNet (see the module docstring)."""

    def __init__(self, channels=(64, 192, 384, 384, 256), units=4096, *, num_classes=1000, in_channels=3,
                 input_size=224, activation="ste", weight="sign"):
        super().__init__()
        self.input_size, self.in_channels = input_size, in_channels
        c1, c2, c3, c4, c5 = channels
        kw = dict(bias=False, input_quantizer=activation, weight_quantizer=weight)
        side = feature_side("alexnet-binary", input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 11, stride=4, padding=2, bias=False),
            nn.MaxPool2d(3, 2), BatchNormNoScale2d(c1),
            BinaryConv2d(c1, c2, 5, padding=2, **kw), nn.MaxPool2d(3, 2), BatchNormNoScale2d(c2),
            BinaryConv2d(c2, c3, 3, padding=1, **kw), BatchNormNoScale2d(c3),
            BinaryConv2d(c3, c4, 3, padding=1, **kw), BatchNormNoScale2d(c4),
            BinaryConv2d(c4, c5, 3, padding=1, **kw), nn.MaxPool2d(3, 2), BatchNormNoScale2d(c5),
        )
        self.num_features = c5
        self.classifier = nn.Sequential(
            BinaryLinear(c5 * side * side, units, **kw), BatchNormNoScale1d(units),
            BinaryLinear(units, units, **kw), BatchNormNoScale1d(units),
        )
        self.fc = nn.Linear(units, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.classifier(torch.flatten(features, 1)))


class XnorConv(nn.Module):
    """XNOR-Net conv block: BN -> binary activation -> binary conv -> ReLU."""

    def __init__(self, cin, cout, kernel_size, padding, activation, weight):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = BinaryConv2d(cin, cout, kernel_size, padding=padding, bias=True,
                                 input_quantizer=activation, weight_quantizer=weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(self.bn(x)))


class XnorLinear(nn.Module):
    """XNOR-Net dense block: BN -> binary activation -> binary FC -> ReLU."""

    def __init__(self, cin, cout, activation, weight):
        super().__init__()
        self.bn = nn.BatchNorm1d(cin)
        self.fc = BinaryLinear(cin, cout, bias=True, input_quantizer=activation, weight_quantizer=weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.bn(x)))


class XnorAlexNet(BnnModel):
    """XNOR-Net AlexNet (see the module docstring)."""

    def __init__(self, channels=(96, 256, 384, 384, 256), units=4096, *, num_classes=1000, in_channels=3,
                 input_size=224, activation="ste", weight="scaled"):
        super().__init__()
        self.input_size, self.in_channels = input_size, in_channels
        c1, c2, c3, c4, c5 = channels
        side = feature_side("xnornet", input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 11, stride=4, padding=2, bias=True),
            nn.BatchNorm2d(c1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            XnorConv(c1, c2, 5, 2, activation, weight), nn.MaxPool2d(3, 2),
            XnorConv(c2, c3, 3, 1, activation, weight),
            XnorConv(c3, c4, 3, 1, activation, weight),
            XnorConv(c4, c5, 3, 1, activation, weight), nn.MaxPool2d(3, 2),
        )
        self.num_features = c5
        self.classifier = nn.Sequential(
            XnorLinear(c5 * side * side, units, activation, weight),
            XnorLinear(units, units, activation, weight),
            nn.BatchNorm1d(units), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(units, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.classifier(torch.flatten(features, 1)))


_PROXY = dict(width=0.125, input_size=64)


def _check(name, num_classes, in_channels):
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "in_channels", in_channels)


@register_model("alexnet-binary", paper=BOP_PAPER, proxy=_PROXY)
def alexnet_binary(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="ste",
                   weight="sign") -> BinaryAlexNet:
    """Binary AlexNet of the Bop ImageNet table: real first conv and last FC, BN without scale."""
    _check("alexnet-binary", num_classes, in_channels)
    channels = tuple(scale_width(c, width) for c in (64, 192, 384, 384, 256))
    return BinaryAlexNet(channels, scale_width(4096, width), num_classes=num_classes,
                         in_channels=in_channels, input_size=input_size, activation=activation, weight=weight)


@register_model("xnornet", paper=XNOR_PAPER, proxy=_PROXY)
def xnornet(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="ste",
            weight="scaled") -> XnorAlexNet:
    """XNOR-Net AlexNet: BN -> sign -> binary conv (scaled weights) -> ReLU; first and last real."""
    _check("xnornet", num_classes, in_channels)
    channels = tuple(scale_width(c, width) for c in (96, 256, 384, 384, 256))
    return XnorAlexNet(channels, scale_width(4096, width), num_classes=num_classes,
                       in_channels=in_channels, input_size=input_size, activation=activation, weight=weight)
