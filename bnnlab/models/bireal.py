"""Bi-Real Net: binary ResNets with a real-valued shortcut around every binary conv.

Liu, Wu, Luo, Yang, Liu, Cheng, "Bi-Real Net: Enhancing the Performance of 1-bit CNNs
With Improved Representational Capability and Advanced Training Algorithm", ECCV 2018
(arXiv:1808.00278); IJCV extension arXiv:1811.01335.

Architecture (as the official PyTorch ``birealnet.py``)::

    stem:  7x7/2 real conv -> BN -> 3x3/2 maxpool        ("imagenet", 224 px; no ReLU)
           3x3/1 real conv -> BN                          ("cifar", 32 px)
    unit:  x -> q_a -> 3x3 binary conv (q_w) -> BN -> + shortcut(x)
    shortcut: identity, or AvgPool2d(2) -> real 1x1 conv -> BN where the shape changes
    head:  global average pool -> real FC

Bi-Real-18 has 4 stages x 4 units (64, 128, 256, 512 channels), Bi-Real-34 has
[6, 8, 12, 6] units. ``shortcut="block"`` instead puts one shortcut around every *two*
binary convs (a plain binary ResNet, the ablation baseline and XNOR-Net-18's layout).

The activation ``q_a`` lives inside each :class:`~bnnlab.binary.BinaryConv2d` as its
``input_quantizer`` and the weight binarizer as its ``weight_quantizer``, so the
real-valued initialiser (``bireal18-real``: clip activations, real weights) has exactly
the parameter names of ``bireal18`` and :func:`bnnlab.binary.set_quantizers` switches
between them in place.
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.binary import BinaryConv2d
from bnnlab.errors import BnnlabError
from bnnlab.models._common import (
    RPRELU_CHOICES,
    BnnModel,
    activation_is_binary,
    check_choice,
    check_input_size,
    check_positive_int,
    input_quantizer,
    make_post_activation,
    resolve_stem,
    scale_width,
    shortcut_pool,
)
from bnnlab.models._registry import register_model

__all__ = ["BiRealNet", "BiRealUnit", "BinaryBasicBlock"]

BIREAL_PAPER = ("Liu et al., Bi-Real Net: Enhancing the Performance of 1-bit CNNs, ECCV 2018, "
                "arXiv:1808.00278")
XNOR_PAPER = ("Rastegari et al., XNOR-Net: ImageNet Classification Using Binary Convolutional "
              "Neural Networks, ECCV 2016, arXiv:1603.05279 (ResNet-18 row of the Bi-Real table)")
SHORTCUT_CHOICES = ("conv", "block")


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    """Bi-Real's shape-changing shortcut: AvgPool2d(2) (if strided) -> real 1x1 conv -> BN."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(
        shortcut_pool() if stride != 1 else nn.Identity(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


def _binary_conv3x3(cin, cout, stride, activation, weight, rsign):
    return BinaryConv2d(cin, cout, 3, stride=stride, padding=1, bias=False,
                        input_quantizer=input_quantizer(activation, cin, rsign),
                        weight_quantizer=weight)


class BiRealUnit(nn.Module):
    """One Bi-Real unit: ``post(BN(conv(q_a(x))) + shortcut(x))`` (``post`` is identity in
    Bi-Real and RPReLU in ReActNet-18)."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str, weight: str,
                 rsign: bool = False, post: str = "none"):
        super().__init__()
        self.conv = _binary_conv3x3(cin, cout, stride, activation, weight, rsign)
        self.bn = nn.BatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)
        self.act = make_post_activation(post, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.act(self.bn(self.conv(x)) + identity)


class BinaryBasicBlock(nn.Module):
    """A plain binary ResNet basic block: two binary convs, one shortcut around both."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str, weight: str,
                 rsign: bool = False, post: str = "none"):
        super().__init__()
        self.conv1 = _binary_conv3x3(cin, cout, stride, activation, weight, rsign)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _binary_conv3x3(cout, cout, 1, activation, weight, rsign)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)
        self.act = make_post_activation(post, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        return self.act(out + identity)


class BiRealNet(BnnModel):
    """A Bi-Real-style binary ResNet (see the module docstring).

    Args:
        stage_channels: output channels of each stage (already width-scaled).
        stage_units: binary convs per stage; the first unit of every stage after the
            first has stride 2.
        stem: ``"imagenet"`` (7x7/2 conv, BN, maxpool) or ``"cifar"`` (3x3/1 conv, BN).
        shortcut: ``"conv"`` (Bi-Real: around every binary conv) or ``"block"`` (around
            every two binary convs).
        rsign, post: ReActNet switches (:class:`~bnnlab.binary.RSign` input quantizers,
            activation after each add: ``"rprelu"``, ``"prelu"`` or ``"none"``).
    """

    def __init__(self, stage_channels, stage_units, *, num_classes=1000, in_channels=3, input_size=224,
                 stem="imagenet", stem_channels=None, activation="approx", weight="scaled",
                 shortcut="conv", rsign=False, post="none", name="bireal"):
        super().__init__()
        check_choice(name, "shortcut", shortcut, SHORTCUT_CHOICES)
        check_choice(name, "rprelu", post, RPRELU_CHOICES)
        check_positive_int(name, "num_classes", num_classes)
        check_positive_int(name, "in_channels", in_channels)
        self.input_size, self.in_channels = input_size, in_channels
        stem_channels = stem_channels or stage_channels[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_channels)

        stages, cin = [], stem_channels
        for i, (cout, units) in enumerate(zip(stage_channels, stage_units, strict=True)):
            if shortcut == "block":
                if units % 2:
                    raise BnnlabError(f"model '{name}': shortcut='block' needs an even number of "
                                      f"binary convs per stage, got {units}")
                block, units = BinaryBasicBlock, units // 2
            else:
                block = BiRealUnit
            layers = []
            for j in range(units):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(cin, cout, stride, activation, weight, rsign, post))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.bn1(self.conv1(x)))
        return self.stages(x)


def build_bireal(name, depth, *, num_classes, in_channels, input_size, width, activation, weight,
                 stem, shortcut, rsign=False, post="none") -> BiRealNet:
    """Bi-Real-18/34 with the ImageNet stage layout, scaled by ``width``."""
    check_input_size(name, input_size)
    units = {18: (4, 4, 4, 4), 34: (6, 8, 12, 6)}[depth]
    channels = tuple(scale_width(c, width) for c in (64, 128, 256, 512))
    return BiRealNet(channels, units, num_classes=num_classes, in_channels=in_channels,
                     input_size=input_size, stem=resolve_stem(name, stem, input_size),
                     activation=activation, weight=weight, shortcut=shortcut, rsign=rsign,
                     post=post, name=name)


_PROXY = dict(width=0.25, stem="cifar", input_size=32)
_REAL_ACTIVATIONS = ("clip", "relu", "leaky-clip", "real")


@register_model("bireal18", paper=BIREAL_PAPER, proxy=_PROXY)
def bireal18(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="approx",
             weight="scaled", stem=None, shortcut="conv") -> BiRealNet:
    """Bi-Real Net 18: 16 binary 3x3 convs, each with its own real shortcut (ImageNet 56.4% top-1).

    ``stem=None`` picks the 7x7 ImageNet stem above 64 px and the 3x3 CIFAR stem below.
    """
    return build_bireal("bireal18", 18, **locals())


@register_model("bireal34", paper=BIREAL_PAPER, proxy=_PROXY)
def bireal34(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="approx",
             weight="scaled", stem=None, shortcut="conv") -> BiRealNet:
    """Bi-Real Net 34: [6, 8, 12, 6] binary 3x3 convs per stage (ImageNet 62.2% top-1)."""
    return build_bireal("bireal34", 34, **locals())


def _check_real(name, activation, weight):
    if activation_is_binary(activation):
        raise BnnlabError(f"model '{name}' is real-valued: activation must be one of "
                          f"{', '.join(_REAL_ACTIVATIONS)}, got {activation!r}")
    if weight != "real":
        raise BnnlabError(f"model '{name}' is real-valued: weight must be 'real', got {weight!r} "
                          f"(use '{name.removesuffix('-real')}' for binary weights)")


@register_model("bireal18-real", paper=BIREAL_PAPER, proxy=_PROXY)
def bireal18_real(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="clip",
                  weight="real", stem=None, shortcut="conv") -> BiRealNet:
    """Real-valued Bi-Real-18 initialiser: clip(-1, x, 1) instead of sign, real weights.

    Same parameter names as ``bireal18``, so its weights load into it (Bi-Real's
    initialisation study: ``activation`` = ``"clip"``, ``"relu"`` or ``"leaky-clip"``).
    """
    _check_real("bireal18-real", activation, weight)
    return build_bireal("bireal18-real", 18, **locals())


@register_model("bireal34-real", paper=BIREAL_PAPER, proxy=_PROXY)
def bireal34_real(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="clip",
                  weight="real", stem=None, shortcut="conv") -> BiRealNet:
    """Real-valued Bi-Real-34 initialiser: clip(-1, x, 1) instead of sign, real weights."""
    _check_real("bireal34-real", activation, weight)
    return build_bireal("bireal34-real", 34, **locals())


@register_model("xnornet18", paper=XNOR_PAPER, proxy=_PROXY)
def xnornet18(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="ste",
              weight="scaled", stem=None, shortcut="block") -> BiRealNet:
    """XNOR-Net ResNet-18: binary ResNet-18 with one shortcut per two binary convs (51.2% top-1).

    Scaled (mean-|W|) binary weights and STE sign activations; BN follows each conv as
    in Bi-Real's re-implementation (XNOR-Net's own BN -> sign -> conv order is the AlexNet
    ``xnornet`` model). The activation scale K of the paper is omitted, as in most
    re-implementations.
    """
    return build_bireal("xnornet18", 18, **locals())


@register_model("bireal20", paper=BIREAL_PAPER + " (CIFAR ResNet-20 layout, He et al. arXiv:1512.03385)",
                proxy=dict(width=0.5))
def bireal20(*, num_classes=10, in_channels=3, input_size=32, width=1.0, activation="approx",
             weight="scaled", shortcut="conv") -> BiRealNet:
    """Bi-Real ResNet-20 for CIFAR: 3 stages (16, 32, 64 ch) x 6 binary convs, 3x3 stem."""
    check_input_size("bireal20", input_size)
    channels = tuple(scale_width(c, width) for c in (16, 32, 64))
    return BiRealNet(channels, (6, 6, 6), num_classes=num_classes, in_channels=in_channels,
                     input_size=input_size, stem="cifar", activation=activation, weight=weight,
                     shortcut=shortcut, name="bireal20")


@register_model("binary-cnn-tiny", paper=BIREAL_PAPER + " (tiny CPU variant, not from the paper)",
                proxy=dict())
def binary_cnn_tiny(*, num_classes=10, in_channels=1, input_size=8, width=1.0, activation="approx",
                    weight="scaled", depth=4, shortcut="conv") -> BiRealNet:
    """Tiny Bi-Real CNN for 8x8 digits: real 3x3 stem (32 ch), ``depth`` binary units, one stride 2.

    The units are split over two stages (32 then 64 channels); the second stage starts
    with the stride-2 Bi-Real downsample. Trains in seconds on a CPU.
    """
    check_input_size("binary-cnn-tiny", input_size)
    check_positive_int("binary-cnn-tiny", "depth", depth, minimum=2)
    first = (depth + 1) // 2
    if shortcut == "block" and (first % 2 or (depth - first) % 2):
        raise BnnlabError("model 'binary-cnn-tiny': shortcut='block' needs depth divisible by 4")
    channels = (scale_width(32, width), scale_width(64, width))
    return BiRealNet(channels, (first, depth - first), num_classes=num_classes, in_channels=in_channels,
                     input_size=input_size, stem="cifar", activation=activation, weight=weight,
                     shortcut=shortcut, name="binary-cnn-tiny")
