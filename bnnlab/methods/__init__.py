"""Training-method building blocks: losses and batch augmentations (torch only).

    >>> from bnnlab.methods import AUGMENTS, LOSSES, DistributionalLoss, CutMix
    >>> mixer = AUGMENTS.get("cutmix")(alpha=1.0)
    >>> kd = LOSSES.get("kd")(temperature=1.0)

* :data:`LOSSES` -- ``"ce"`` (:class:`torch.nn.CrossEntropyLoss`, which accepts class
  indices or soft ``(N, C)`` targets), ``"kd"`` (:class:`DistributionalLoss`, ReActNet),
  ``"cmim"`` (:class:`ContrastiveMILoss`, CMIM). Entries are classes; call them with
  their own keyword arguments.
* :data:`AUGMENTS` -- ``"none"`` (:class:`NoMix`), ``"cutmix"`` (:class:`CutMix`),
  ``"attentive"`` (:class:`AttentiveCutMix`, needs an ``extractor``). Each mixer returns
  ``(mixed_x, y_a, y_b, lam)``; see :mod:`bnnlab.methods.cutmix` for the convention.
"""

from torch import nn

from bnnlab.methods.cmim import ContrastiveMILoss
from bnnlab.methods.cutmix import (
    AttentiveCutMix,
    CutMix,
    NoMix,
    cell_boundaries,
    mix_targets,
    mixed_cross_entropy,
)
from bnnlab.methods.distill import DistributionalLoss, distributional_loss
from bnnlab.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")
LOSSES.register("ce")(nn.CrossEntropyLoss)
LOSSES.register("kd")(DistributionalLoss)
LOSSES.register("cmim")(ContrastiveMILoss)

AUGMENTS: Registry[type] = Registry("augmentation")
AUGMENTS.register("none")(NoMix)
AUGMENTS.register("cutmix")(CutMix)
AUGMENTS.register("attentive")(AttentiveCutMix)

__all__ = [
    "AUGMENTS", "LOSSES", "AttentiveCutMix", "ContrastiveMILoss", "CutMix", "DistributionalLoss",
    "NoMix", "cell_boundaries", "distributional_loss", "mix_targets", "mixed_cross_entropy",
]
