"""Distributional (knowledge-distillation) loss of ReActNet (Liu et al., "ReActNet: Towards
Precise Binary Neural Network with Generalized Activation Functions", ECCV 2020,
arXiv:2003.03488, eq. 4).

The binary student matches the output distribution of a real-valued teacher:

.. math::
    p_S = \\mathrm{softmax}(z_S / T), \\qquad p_T = \\mathrm{softmax}(z_T / T)

    \\mathcal{L}_{\\mathrm{distr}} = -\\frac{1}{n} \\sum_{i=1}^{n} \\sum_{c} p_T^{(i)}(c)
        \\log p_S^{(i)}(c) \\;\\cdot\\; T^2

The cross-entropy form equals :math:`\\mathrm{KL}(p_T \\| p_S) + H(p_T)`; :math:`H(p_T)` does
not depend on the student, so both have the same gradient. The factor :math:`T^2`
(Hinton et al., "Distilling the Knowledge in a Neural Network", 2015) keeps the gradient
magnitude independent of the temperature; it is 1 at ReActNet's setting ``T = 1``.
Teacher logits are always detached. ReActNet uses ``T = 1`` and no hard-label term.

    >>> loss = DistributionalLoss()(student(x), teacher(x))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DistributionalLoss", "distributional_loss"]


def distributional_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``-mean_n sum_c softmax(z_T/T) * log_softmax(z_S/T) * T**2`` (ReActNet eq. 4).

    ``teacher_logits`` is detached; the result is a 0-d tensor.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
            f"vs {tuple(teacher_logits.shape)}"
        )
    t = float(temperature)
    dtype = torch.promote_types(student_logits.dtype, torch.float32)  # fp16/bf16 -> fp32
    p_t = F.softmax(teacher_logits.detach().to(dtype) / t, dim=-1)
    log_p_s = F.log_softmax(student_logits.to(dtype) / t, dim=-1)
    loss = -(p_t * log_p_s).sum(dim=-1).mean()
    return loss * (t * t) if t != 1.0 else loss


class DistributionalLoss(nn.Module):
    """Distributional loss with an optional hard-label term.

    .. math::
        \\mathcal{L} = T^2 \\, \\mathrm{CE}(p_T, p_S)
            + w_{\\mathrm{hard}} \\, \\mathrm{CE}_{\\epsilon}(y, \\mathrm{softmax}(z_S))

    Args:
        temperature: softmax temperature ``T`` (> 0) of both distributions; the soft term is
            multiplied by ``T**2`` (Hinton convention; no-op at ``T = 1``).
        hard_weight: weight ``w_hard`` of an ordinary cross-entropy on the student's raw logits
            (temperature 1). 0 (ReActNet) disables it and ``target`` may be omitted.
        label_smoothing: label smoothing ``epsilon`` of the hard term.

    ``forward(student_logits, teacher_logits, target=None)``: ``target`` is either class
    indices ``(N,)`` or soft targets ``(N, C)`` (e.g. CutMix labels from
    :func:`bnnlab.methods.mix_targets`).
    """

    def __init__(self, temperature: float = 1.0, hard_weight: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if hard_weight < 0:
            raise ValueError(f"hard_weight must be >= 0, got {hard_weight}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.temperature = float(temperature)
        self.hard_weight = float(hard_weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor | None = None) -> Tensor:
        loss = distributional_loss(student_logits, teacher_logits, self.temperature)
        if self.hard_weight > 0:
            if target is None:
                raise ValueError("DistributionalLoss with hard_weight > 0 needs a target")
            if target.is_floating_point():
                target = target.to(student_logits.dtype)
            hard = F.cross_entropy(student_logits, target, label_smoothing=self.label_smoothing)
            loss = loss + self.hard_weight * hard
        return loss

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, hard_weight={self.hard_weight}, "
            f"label_smoothing={self.label_smoothing}"
        )
