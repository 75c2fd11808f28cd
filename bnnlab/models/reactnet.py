"""ReActNet: ReActNet-A (MobileNetV1 layout) and ReActNet-18 (Bi-Real-18 layout).

Liu, Shen, Savvides, Cheng, "ReActNet: Towards Precise Binary Neural Network with
Generalized Activation Functions", ECCV 2020 (arXiv:2003.03488).

ReActNet-A (official ``reactnet.py``, MobileNet folder)::

    stem:  3x3/2 real conv (32 ch) -> BN                 (no activation)
    block: RSign -> 3x3 binary conv (in -> in, stride s) -> BN -> + shortcut -> RPReLU
           RSign -> 1x1 binary conv(s)                  -> BN -> + shortcut -> RPReLU
    head:  global average pool -> real FC

13 blocks with widths 32->64, 64->128 /2, 128->128, 128->256 /2, 256->256, 256->512 /2,
5x 512->512, 512->1024 /2, 1024->1024. The first shortcut is AvgPool2d(2) at stride 2,
identity otherwise. Where the width doubles the official code applies two in->in 1x1
binary convs (each with its own BN and an identity shortcut) to the same binarized input
and concatenates them; here that is one in->2in 1x1 binary conv and one BN over 2*in
channels with the shortcut concatenated to itself, which is the same function with the
same parameters (per-output-channel weight scales and BN statistics are per channel) and
the same operation count.

ReActNet-18 is Bi-Real-18 with an RSign before every binary conv and an RPReLU after every
shortcut add. Switches: ``rsign=False`` (plain sign, no learnable threshold) and
``rprelu="rprelu" | "prelu" | "none"`` for the paper's ablation.

Weights: the official code binarizes weights as ``mean|W| * sign(W)`` with the scale
detached (bnnlab's ``"scaled-official"``); the default here is ``weight="sign"`` (plain
+-1, which BN absorbs), with ``"scaled"`` and ``"scaled-official"`` available.
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.binary import BinaryConv2d
from bnnlab.models._common import (
    RPRELU_CHOICES,
    BnnModel,
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
from bnnlab.models.bireal import build_bireal

__all__ = ["ReActNetA", "ReActBlock"]

REACTNET_PAPER = ("Liu et al., ReActNet: Towards Precise Binary Neural Network with Generalized "
                  "Activation Functions, ECCV 2020, arXiv:2003.03488")

# MobileNetV1 widths in units of the stem width (32): stem, then the 13 blocks' outputs.
_MULTIPLIERS = (1, 2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32)


class ReActBlock(nn.Module):
    """One ReActNet-A block (3x3 binary conv unit, then 1x1 binary conv unit)."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str = "approx", weight: str = "sign",
                 rsign: bool = True, rprelu: str = "rprelu"):
        super().__init__()
        if cout not in (cin, 2 * cin):
            raise ValueError(f"ReActBlock needs cout == cin or 2 * cin, got {cin} -> {cout}")
        self.conv3x3 = BinaryConv2d(cin, cin, 3, stride=stride, padding=1, bias=False,
                                    input_quantizer=input_quantizer(activation, cin, rsign),
                                    weight_quantizer=weight)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pool = shortcut_pool() if stride != 1 else nn.Identity()
        self.act1 = make_post_activation(rprelu, cin)
        self.conv1x1 = BinaryConv2d(cin, cout, 1, bias=False,
                                    input_quantizer=input_quantizer(activation, cin, rsign),
                                    weight_quantizer=weight)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = make_post_activation(rprelu, cout)
        self.doubles = cout == 2 * cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv3x3(x)) + self.pool(x))
        shortcut = torch.cat([out, out], dim=1) if self.doubles else out
        return self.act2(self.bn2(self.conv1x1(out)) + shortcut)


class ReActNetA(BnnModel):
    """ReActNet-A (see the module docstring); ``base`` is the (width-scaled) stem width."""

    def __init__(self, base: int = 32, *, num_classes=1000, in_channels=3, input_size=224, stem="imagenet",
                 activation="approx", weight="sign", rsign=True, rprelu="rprelu"):
        super().__init__()
        self.input_size, self.in_channels = input_size, in_channels
        widths = [base * m for m in _MULTIPLIERS]
        self.conv1 = nn.Conv2d(in_channels, base, 3, stride=2 if stem == "imagenet" else 1,
                               padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        blocks = []
        for i in range(1, len(widths)):
            cin, cout = widths[i - 1], widths[i]
            stride = 2 if (cout != cin and i > 1) else 1
            blocks.append(ReActBlock(cin, cout, stride, activation, weight, rsign, rprelu))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv1(x)))


_PROXY = dict(width=0.25, stem="cifar", input_size=32)


@register_model("reactnet-a", paper=REACTNET_PAPER, proxy=_PROXY)
def reactnet_a(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="approx",
               weight="sign", stem=None, rsign=True, rprelu="rprelu") -> ReActNetA:
    """ReActNet-A: binary MobileNetV1 with RSign/RPReLU and shortcuts around every conv (69.4% top-1).

    ``stem=None`` uses the stride-2 stem above 64 px and a stride-1 stem below.
    """
    check_input_size("reactnet-a", input_size)
    check_positive_int("reactnet-a", "num_classes", num_classes)
    check_positive_int("reactnet-a", "in_channels", in_channels)
    check_choice("reactnet-a", "rsign", rsign, (True, False))
    check_choice("reactnet-a", "rprelu", rprelu, RPRELU_CHOICES)
    return ReActNetA(scale_width(32, width), num_classes=num_classes, in_channels=in_channels,
                     input_size=input_size, stem=resolve_stem("reactnet-a", stem, input_size),
                     activation=activation, weight=weight, rsign=rsign, rprelu=rprelu)


@register_model("reactnet18", paper=REACTNET_PAPER, proxy=_PROXY)
def reactnet18(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="approx",
               weight="sign", stem=None, rsign=True, rprelu="rprelu") -> nn.Module:
    """ReActNet-18: Bi-Real-18 with RSign before and RPReLU after every binary unit (65.5% top-1)."""
    check_choice("reactnet18", "rsign", rsign, (True, False))
    return build_bireal("reactnet18", 18, num_classes=num_classes, in_channels=in_channels,
                        input_size=input_size, width=width, activation=activation, weight=weight,
                        stem=stem, shortcut="conv", rsign=rsign, post=rprelu)
