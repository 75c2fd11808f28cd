"""Real-valued ResNet teachers (torchvision blocks, never any downloaded weights).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385). Used as ReActNet's distributional-loss teacher (ResNet-34), the
CMIM full-precision partner (ResNet-18) and the Attentive CutMix feature extractor
(ResNet-50).

The modules are torchvision's ``BasicBlock`` / ``Bottleneck`` and the attribute names are
torchvision's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``fc``), so a torchvision
checkpoint that the user supplies loads with ``load_state_dict`` unchanged. Options:
``stem="cifar"`` (3x3/1 first conv, no max pool), ``in_channels`` (first conv),
``width`` (channel multiplier for CPU-sized teachers). Initialisation follows
torchvision (Kaiming normal, fan-out, for convs).
"""

from __future__ import annotations

import torch
from torch import nn

from bnnlab.errors import BnnlabError
from bnnlab.models._common import BnnModel, check_input_size, check_positive_int, resolve_stem, scale_width
from bnnlab.models._registry import register_model

__all__ = ["ResNet"]

RESNET_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385"


class ResNet(BnnModel):
    """torchvision's ResNet with a width multiplier and a CIFAR stem option."""

    def __init__(self, block: str, layers, *, num_classes=1000, in_channels=3, input_size=224,
                 width=1.0, stem="imagenet"):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.input_size, self.in_channels = input_size, in_channels
        self.inplanes = scale_width(64, width)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        for i, n in enumerate(layers):
            planes, stride = scale_width(64 * 2**i, width), 1 if i == 0 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes * block_cls.expansion:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes * block_cls.expansion, stride),
                                           nn.BatchNorm2d(planes * block_cls.expansion))
            blocks = [block_cls(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block_cls.expansion
            blocks += [block_cls(self.inplanes, planes) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


def _build(name, block, layers, *, num_classes, in_channels, input_size, width, activation, weight, stem):
    if activation != "relu" or weight != "real":
        raise BnnlabError(f"model '{name}' is a real-valued torchvision ResNet: activation must be 'relu' "
                          f"and weight 'real' (got {activation!r}, {weight!r}); "
                          "for binary ResNets use bireal18/bireal34")
    check_input_size(name, input_size)
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "in_channels", in_channels)
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                  width=width, stem=resolve_stem(name, stem, input_size))


_PROXY = dict(width=0.25, stem="cifar", input_size=32)


@register_model("resnet18", paper=RESNET_PAPER, proxy=_PROXY)
def resnet18(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="relu",
             weight="real", stem=None) -> ResNet:
    """Real-valued ResNet-18 (torchvision layout, random init): teacher and CMIM partner."""
    return _build("resnet18", "basic", (2, 2, 2, 2), **locals())


@register_model("resnet34", paper=RESNET_PAPER, proxy=_PROXY)
def resnet34(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="relu",
             weight="real", stem=None) -> ResNet:
    """Real-valued ResNet-34 (torchvision layout, random init): ReActNet's teacher."""
    return _build("resnet34", "basic", (3, 4, 6, 3), **locals())


@register_model("resnet50", paper=RESNET_PAPER, proxy=_PROXY)
def resnet50(*, num_classes=1000, in_channels=3, input_size=224, width=1.0, activation="relu",
             weight="real", stem=None) -> ResNet:
    """Real-valued ResNet-50 (torchvision layout, random init): Attentive CutMix's extractor."""
    return _build("resnet50", "bottleneck", (3, 4, 6, 3), **locals())
