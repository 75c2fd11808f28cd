"""Contrastive mutual-information loss (CMIM; Shang et al., "Network Binarization via
Contrastive Learning", ECCV 2022, arXiv:2207.02970), built like CRD's memory-bank
contrast (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

The binary network's activation and the full-precision network's activation of the same
input form a positive pair; activations of other samples are negatives. Both sides are
embedded by a linear head and L2-normalised,

.. math::
    s_i = \\frac{W_s a^S_i}{\\|W_s a^S_i\\|}, \\qquad t_i = \\frac{W_t a^T_i}{\\|W_t a^T_i\\|},

and compared with ``K`` negatives from a memory bank of the *other* side that holds one
embedding per training sample. **NCE form:** bnnlab uses the softmax InfoNCE over ``1 + K``
candidates (Oord et al. 2018; the ``NCESoftmaxLoss`` option of the CMC/CRD code), not
CRD's binary NCE with the estimated normaliser ``Z``:

.. math::
    \\mathcal{L}_S = -\\frac{1}{n} \\sum_i \\log
        \\frac{e^{s_i \\cdot t_i / \\tau}}{e^{s_i \\cdot t_i / \\tau}
        + \\sum_{k=1}^{K} e^{s_i \\cdot m^T_{j_k} / \\tau}}

with ``L_T`` the same with the roles of ``s``/``t`` and the banks swapped. ``symmetric=True``
returns ``(L_S + L_T) / 2``, otherwise ``L_S`` (student as anchor). After the loss, the
banks are updated at the batch's dataset indices, without gradient:

.. math::
    m_i \\leftarrow \\frac{\\mu m_i + (1 - \\mu) z_i}{\\|\\mu m_i + (1 - \\mu) z_i\\|}

Paper setting: 128-d embeddings, ``K = 4096``, ``tau = 0.1``, ``mu = 0.5``, total loss
``CE + alpha * L`` with ``alpha = 3.2`` (CIFAR-100).

    >>> cmim = ContrastiveMILoss(student_dim=512, teacher_dim=512, num_samples=len(train_set))
    >>> loss = ce + 3.2 * cmim(student_feat, teacher_feat, index)

The banks are buffers: they follow ``.to(device)`` and are saved in ``state_dict`` (and so
in Lightning checkpoints). Under DDP each process updates its own copy at its own indices
only (not synchronised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContrastiveMILoss"]


def _flatten(feat: Tensor) -> Tensor:
    if feat.dim() == 4:
        return feat.mean(dim=(2, 3))  # global average pooling
    if feat.dim() == 2:
        return feat
    raise ValueError(f"CMIM features must be (N, D) or (N, C, H, W), got shape {tuple(feat.shape)}")


class ContrastiveMILoss(nn.Module):
    """CMIM contrastive loss with two memory banks (see the module docstring).

    Args:
        student_dim: channels ``D_S`` of the binary network's feature.
        teacher_dim: channels ``D_T`` of the real-valued network's feature.
        num_samples: training-set size; rows of each memory bank.
        feat_dim: embedding size (paper: 128).
        num_negatives: negatives ``K`` per anchor (paper: 4096); capped at
            ``num_samples - 1`` so that small datasets work.
        temperature: ``tau`` (paper: 0.1).
        momentum: memory momentum ``mu`` in [0, 1) (paper: 0.5).
        symmetric: both sides act as anchor and the two losses are averaged (paper).

    ``forward(student_feat, teacher_feat, index)``: features ``(N, D)`` or ``(N, C, H, W)``
    (global-average-pooled first); ``index`` holds the samples' dataset indices (``(N,)``
    long tensor in ``[0, num_samples)``). The teacher feature is detached (the real-valued
    network is frozen) but the teacher's projection head is trained.

    **Negatives:** each call draws ``K`` distinct bank rows uniformly at random (global torch
    RNG, on the bank's device) and shares them across the batch (cheap: one ``(N, K)``
    matmul). A drawn row that belongs to the anchor's own sample is masked out of that
    anchor's denominator, so an anchor sees ``K`` or ``K - 1`` negatives.

    **Memory updates** happen in training mode only (``module.train()``); in eval mode the
    loss is computed against the banks but leaves them untouched, so validation batches
    (whose indices refer to another dataset) never overwrite training rows.
    """

    memory_student: Tensor
    memory_teacher: Tensor

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        feat_dim: int = 128,
        num_negatives: int = 4096,
        temperature: float = 0.1,
        momentum: float = 0.5,
        symmetric: bool = True,
    ):
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"CMIM needs num_samples >= 2, got {num_samples}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_samples = int(num_samples)
        self.feat_dim = int(feat_dim)
        self.num_negatives = min(int(num_negatives), self.num_samples - 1)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.symmetric = bool(symmetric)
        self.embed_student = nn.Linear(student_dim, feat_dim)
        self.embed_teacher = nn.Linear(teacher_dim, feat_dim)
        self.register_buffer("memory_student", F.normalize(torch.randn(num_samples, feat_dim), dim=1))
        self.register_buffer("memory_teacher", F.normalize(torch.randn(num_samples, feat_dim), dim=1))

    def embed(self, student_feat: Tensor, teacher_feat: Tensor) -> tuple[Tensor, Tensor]:
        """L2-normalised embeddings ``(s, t)``, each ``(N, feat_dim)``; teacher detached."""
        s = F.normalize(self.embed_student(_flatten(student_feat)), dim=1)
        t = F.normalize(self.embed_teacher(_flatten(teacher_feat).detach()), dim=1)
        return s, t

    def _nce(self, anchor: Tensor, positive: Tensor, negatives: Tensor, own: Tensor) -> Tensor:
        dtype = torch.promote_types(anchor.dtype, torch.float32)  # fp16/bf16 -> fp32
        anchor, positive, negatives = anchor.to(dtype), positive.to(dtype), negatives.to(dtype)
        pos = (anchor * positive).sum(dim=1, keepdim=True)
        neg = (anchor @ negatives.t()).masked_fill(own, float("-inf"))
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        target = torch.zeros(anchor.shape[0], dtype=torch.long, device=anchor.device)
        return F.cross_entropy(logits, target)

    def forward(self, student_feat: Tensor, teacher_feat: Tensor, index: Tensor) -> Tensor:
        index = torch.as_tensor(index, device=self.memory_student.device).long().reshape(-1)
        if index.numel() != student_feat.shape[0] or index.numel() != teacher_feat.shape[0]:
            raise ValueError(
                f"CMIM: index has {index.numel()} entries for a batch of {student_feat.shape[0]} "
                f"student / {teacher_feat.shape[0]} teacher features"
            )
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise ValueError(f"CMIM: dataset indices must lie in [0, {self.num_samples})")
        s, t = self.embed(student_feat, teacher_feat)
        dev = self.memory_student.device
        neg_idx = torch.randperm(self.num_samples, device=dev)[: self.num_negatives]
        own = index[:, None] == neg_idx[None, :]
        loss = self._nce(s, t, self.memory_teacher[neg_idx], own)
        if self.symmetric:
            loss = 0.5 * (loss + self._nce(t, s, self.memory_student[neg_idx], own))
        self.update_memory(s, t, index)
        return loss

    @torch.no_grad()
    def update_memory(self, s: Tensor, t: Tensor, index: Tensor) -> None:
        """``bank[index] = normalize(mu * bank[index] + (1 - mu) * z)`` for both banks."""
        if not self.training:
            return
        mu = self.momentum
        for bank, z in ((self.memory_student, s), (self.memory_teacher, t)):
            z = z.detach().to(bank.dtype)
            new = F.normalize(mu * bank[index] + (1.0 - mu) * z, dim=1)
            bank.index_copy_(0, index, new)

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, feat_dim={self.feat_dim}, "
            f"num_negatives={self.num_negatives}, temperature={self.temperature}, "
            f"momentum={self.momentum}, symmetric={self.symmetric}"
        )
