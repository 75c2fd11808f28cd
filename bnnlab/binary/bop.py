"""Bop, the Binary Optimizer (Helwegen et al., "Latent Weights Do Not Exist: Rethinking
Binarized Neural Network Optimization", NeurIPS 2019, arXiv:1906.02107).

Bop keeps no latent weights. For each binary weight it keeps one exponential moving
average of the gradient and flips the weight when that average is strong enough and
points the same way as the weight:

.. math::
    m_t = (1 - \\gamma)\\, m_{t-1} + \\gamma\\, g_t

    w_t = \\begin{cases} -w_{t-1} & |m_t| > \\tau \\text{ and } \\mathrm{sign}(m_t) = \\mathrm{sign}(w_{t-1}) \\\\
          w_{t-1} & \\text{otherwise} \\end{cases}

Only binary weights go to Bop; every real-valued parameter goes to a second optimizer
(Adam in the paper), see :func:`~bnnlab.binary.split_parameters`. The first step maps
real-valued initial weights to +-1 (sign, with sign(0) = +1). Bop never applies weight
decay. ``gamma`` and ``tau`` live in each param group, so a schedule may change them
between steps (``opt.param_groups[0]["gamma"] = ...``).

    >>> binary, real = split_parameters(model)
    >>> opts = [Bop(binary, gamma=1e-4, tau=1e-8), torch.optim.Adam(real, lr=1e-2)]
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

__all__ = ["Bop"]


class Bop(Optimizer):
    """Bop optimizer for binary weights.

    Args:
        params: binary weights (iterable of parameters or param groups).
        gamma: adaptivity rate of the gradient EMA, in (0, 1]. larq default 1e-4.
        tau: flip threshold, >= 0, in gradient units. larq default 1e-8.
        foreach: update all tensors of a group with ``torch._foreach_*`` kernels
            (default); ``False`` uses one loop of per-tensor ops (reference path).

    After each :meth:`step`, :attr:`last_flip_ratio` is the fraction of binary weights
    that changed sign in that step (a 0-d tensor, kept on device; ``float()`` it to log).
    """

    def __init__(self, params, gamma: float = 1e-4, tau: float = 1e-8, foreach: bool = True):
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"Bop gamma must be in (0, 1], got {gamma}")
        if tau < 0.0:
            raise ValueError(f"Bop tau must be >= 0, got {tau}")
        super().__init__(params, dict(gamma=gamma, tau=tau, foreach=foreach))
        self._flips: torch.Tensor | None = None
        self._count = 0

    @property
    def last_flip_ratio(self) -> torch.Tensor | None:
        if self._flips is None:
            return None
        return self._flips / max(self._count, 1)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        flips, count = None, 0
        for group in self.param_groups:
            gamma, tau = group["gamma"], group["tau"]
            if not 0.0 < gamma <= 1.0:
                raise ValueError(f"Bop gamma must be in (0, 1], got {gamma}")
            ws, gs, ms = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Bop does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    p.copy_(torch.where(p >= 0, 1.0, -1.0).to(p.dtype))  # first step: +-1
                ws.append(p)
                gs.append(p.grad)
                ms.append(state["m"])
            if not ws:
                continue
            n_flip = _bop_update_foreach(ws, gs, ms, gamma, tau) if group["foreach"] \
                else _bop_update_loop(ws, gs, ms, gamma, tau)
            flips = n_flip if flips is None else flips + n_flip
            count += sum(w.numel() for w in ws)
        self._flips, self._count = flips, count
        return loss


def _bop_update_loop(ws, gs, ms, gamma, tau):
    """Reference path: m <- (1-gamma) m + gamma g; flip where m * w > tau."""
    total = None
    for w, g, m in zip(ws, gs, ms, strict=True):
        m.mul_(1 - gamma).add_(g, alpha=gamma)
        flip = (m * w) > tau  # w is +-1: same sign and |m| > tau
        w.copy_(torch.where(flip, -w, w))
        n = flip.sum()
        total = n if total is None else total + n
    return total


def _bop_update_foreach(ws, gs, ms, gamma, tau):
    """Vectorised path: one foreach kernel per pass over all tensors of a group."""
    torch._foreach_lerp_(ms, gs, gamma)  # m + gamma (g - m) == (1-gamma) m + gamma g
    prods = torch._foreach_mul(ms, ws)
    total = None
    for w, mw in zip(ws, prods, strict=True):
        flip = mw > tau
        # w in {-1, +1}: w - 2 w [flip] flips exactly the selected signs
        w.addcmul_(w, flip, value=-2)
        n = flip.sum()
        total = n if total is None else total + n
    return total
