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

from bnnlab.binary.quantizers import sign

__all__ = ["Bop"]


class Bop(Optimizer):
    """Bop optimizer for binary weights.

    Args:
        params: binary weights (iterable of parameters or param groups).
        gamma: adaptivity rate of the gradient EMA, in (0, 1]. larq default 1e-4.
        tau: flip threshold, >= 0, in gradient units. larq default 1e-8.
        foreach: ``True`` updates all tensors of a group with ``torch._foreach_*`` kernels
            (fastest on GPUs); ``False`` loops over tensors with fused per-tensor ops
            (fastest on CPUs, where foreach kernels are plain loops); ``None`` (default)
            picks foreach for CUDA parameters. Both give bit-identical results.

    After each :meth:`step`, :attr:`last_flip_ratio` is the fraction of binary weights
    that changed sign in that step (a 0-d tensor, kept on device; ``float()`` it to log).
    The state is one tensor per weight (``m``), half of Adam's.
    """

    def __init__(self, params, gamma: float = 1e-4, tau: float = 1e-8, foreach: bool | None = None):
        _check_hparams(gamma, tau)
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
            _check_hparams(gamma, tau)
            tau = float(tau) + 0.0  # -0.0 -> +0.0, so ties (m * w == tau) never flip
            ws, gs, ms = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Bop does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    p.copy_(sign(p))  # first step: real-valued initial weights -> +-1
                ws.append(p)
                gs.append(p.grad)
                ms.append(state["m"])
            if not ws:
                continue
            foreach = group.get("foreach")
            if foreach is None:
                foreach = ws[0].is_cuda
            update = _bop_update_foreach if foreach else _bop_update_loop
            n_flip = update(ws, gs, ms, gamma, tau)
            flips = n_flip if flips is None else flips + n_flip
            count += sum(w.numel() for w in ws)
        self._flips, self._count = flips, count
        return loss


def _check_hparams(gamma, tau) -> None:
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"Bop gamma must be in (0, 1], got {gamma}")
    if not tau >= 0.0:  # also rejects NaN
        raise ValueError(f"Bop tau must be >= 0, got {tau}")


# How the update works (w is +-1, so m * w is exact; the sign of a rounded difference is
# the sign of the exact difference):
#   flip  <=>  m * w > tau  <=>  t = tau - m * w < 0.
#   loop path: t is +0.0 (never -0.0) on a tie, so r = copysign(1, t) is -1 exactly where
#   w flips and +1 elsewhere; w <- w * r; flips = (n - sum(r)) / 2  (4 passes after the EMA).
#   foreach path: f = max(sign(m * w - tau), 0) in {0, 1}; w <- w - 2 w f; flips = sum(f).
# Both paths decide from the same m (one lerp kernel) with sign-exact arithmetic, so
# they give bit-identical weights, momenta and flip counts.


def _flip_count(sums: list[torch.Tensor], n: int) -> torch.Tensor:
    """Flips from the sums of the +-1 factors r (``n`` weights): (n - sum r) / 2."""
    total = sums[0] if len(sums) == 1 else torch.stack(sums).sum()
    return ((n - total) / 2).round().long()


def _sum_pm1(r: torch.Tensor) -> torch.Tensor:
    # float32 sums of +-1 are exact below 2**24 elements; beyond that use float64
    return r.sum(dtype=torch.float64 if r.numel() >= 2**24 else torch.float32).double()


def _bop_update_loop(ws, gs, ms, gamma, tau):
    """Per-tensor path: after the EMA, three passes per tensor into one scratch buffer."""
    scratch: dict = {}
    for w in ws:  # one buffer (the largest tensor's size) per dtype and device
        key = (w.dtype, w.device)
        scratch[key] = max(scratch.get(key, 0), w.numel())
    scratch = {k: (torch.empty(n, dtype=k[0], device=k[1]), torch.ones((), dtype=k[0], device=k[1]),
                   torch.full((), tau, dtype=k[0], device=k[1])) for k, n in scratch.items()}
    sums, n = [], 0
    for w, g, m in zip(ws, gs, ms, strict=True):
        m.lerp_(g, gamma)  # m + gamma (g - m) == (1 - gamma) m + gamma g
        buf, one, tau_t = scratch[(w.dtype, w.device)]
        r = buf[: w.numel()].view(w.shape) if w.is_contiguous() else torch.empty_like(w)
        torch.addcmul(tau_t, m, w, value=-1, out=r)  # t = tau - m * w
        torch.copysign(one, r, out=r)  # -1 where w flips
        w.mul_(r)
        sums.append(_sum_pm1(r))
        n += w.numel()
    return _flip_count(sums, n)


def _bop_update_foreach(ws, gs, ms, gamma, tau):
    """Vectorised path: one foreach kernel per pass over all tensors of a group."""
    torch._foreach_lerp_(ms, gs, gamma)
    fs = torch._foreach_mul(ms, ws)  # m * w (exact)
    torch._foreach_sub_(fs, tau)  # > 0 exactly where w flips; ties give 0
    torch._foreach_sign_(fs)
    torch._foreach_clamp_min_(fs, 0.0)  # flip indicator f in {0, 1}
    torch._foreach_addcmul_(ws, ws, fs, value=-2.0)  # w - 2 w f
    total = torch.stack([f.sum(dtype=torch.float64 if f.numel() >= 2**24 else torch.float32).double()
                         for f in fs]).sum()
    return total.round().long()
