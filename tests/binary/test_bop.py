"""Bop: the flip rule against a plain re-implementation, EMA, schedules, state, paths."""

import io

import numpy as np
import pytest
import torch

from bnnlab.binary import Bop

SHAPES = [(8, 4, 3, 3), (16, 8), (5,), (3, 3, 1, 1)]


def _params(seed=0, shapes=SHAPES, pm1=True):
    gen = torch.Generator().manual_seed(seed)
    ps = []
    for s in shapes:
        w = torch.randn(s, generator=gen)
        ps.append(torch.nn.Parameter(torch.where(w >= 0, 1.0, -1.0) if pm1 else w))
    return ps


def _grads(step, seed=0, shapes=SHAPES, scale=1e-2):
    gen = torch.Generator().manual_seed(1000 * seed + step)
    return [torch.randn(s, generator=gen) * scale for s in shapes]


def _set_grads(ps, gs):
    for p, g in zip(ps, gs, strict=True):
        p.grad = g.clone()


@pytest.mark.parametrize("foreach", [False, True])
def test_flip_rule_against_reference(foreach):
    """Over several steps with changing gamma/tau: flip exactly when |m| > tau and
    sign(m) == sign(w), never otherwise; m = (1 - gamma) m + gamma g."""
    ps = _params(pm1=False)
    opt = Bop(ps, gamma=0.3, tau=5e-3, foreach=foreach)
    w_ref = [np.where(p.detach().numpy() >= 0, 1.0, -1.0) for p in ps]  # first step: sign
    m_ref = [np.zeros(p.shape) for p in ps]
    schedule = [(0.3, 5e-3), (0.3, 5e-3), (0.1, 1e-3), (0.5, 0.0), (1.0, 2e-3), (0.05, 1e-4)]
    total_flips = 0
    for step, (gamma, tau) in enumerate(schedule):
        opt.param_groups[0]["gamma"], opt.param_groups[0]["tau"] = gamma, tau
        gs = _grads(step)
        _set_grads(ps, gs)
        opt.step()
        flips = 0
        for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
            m_ref[i] = (1 - gamma) * m_ref[i] + gamma * g.double().numpy()
            m = m_ref[i]
            # no near-ties, so float32 vs float64 cannot disagree
            assert np.all(np.abs(np.abs(m) - tau) > 1e-6)
            flip = (np.abs(m) > tau) & (np.sign(m) == np.sign(w_ref[i]))
            w_ref[i] = np.where(flip, -w_ref[i], w_ref[i])
            flips += int(flip.sum())
            np.testing.assert_array_equal(p.detach().numpy(), w_ref[i])
            np.testing.assert_allclose(opt.state[p]["m"].numpy(), m, rtol=1e-5, atol=1e-9)
        n = sum(p.numel() for p in ps)
        assert opt.last_flip_ratio.item() == pytest.approx(flips / n, rel=1e-6)
        assert int(opt._flips) == flips
        total_flips += flips
    assert total_flips > 0


@pytest.mark.parametrize("foreach", [False, True])
def test_exact_ties_and_zero_momentum(foreach):
    """gamma = 1 makes m = g exactly: ties (|m| == tau) and m == 0 never flip."""
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
    opt = Bop([w], gamma=1.0, tau=0.5, foreach=foreach)
    w.grad = torch.tensor([0.5, 0.6, -0.6, -0.5, -0.6, 0.6, 0.0, 0.0, -0.0, -0.0])
    opt.step()
    assert w.tolist() == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
    assert opt.last_flip_ratio.item() == pytest.approx(0.2)
    opt.param_groups[0]["tau"] = 0.0
    w.grad = torch.tensor([0.0, -0.0, 0.0, -0.0, 1e-30, -1e-30, 0.0, 0.0, 0.0, 0.0])
    opt.step()  # m == 0 with tau == 0: no flips; tiny same-sign m flips
    assert w.tolist() == [1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0]
    opt.param_groups[0]["tau"] = -0.0
    w.grad = torch.zeros(10)
    opt.step()
    assert opt.last_flip_ratio.item() == 0.0


def test_first_step_maps_to_pm1():
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.0, -0.0, 5.0, -1e-9]))
    opt = Bop([w], gamma=1e-4, tau=1.0)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert w.tolist() == [1.0, -1.0, 1.0, 1.0, 1.0, -1.0]
    assert opt.last_flip_ratio.item() == 0.0


def test_ema_exact():
    w = torch.nn.Parameter(torch.ones(1000))
    opt = Bop([w], gamma=0.25, tau=1e9)
    m = torch.zeros(1000, dtype=torch.float64)
    for step in range(5):
        g = _grads(step, shapes=[(1000,)])[0]
        w.grad = g
        opt.step()
        m = 0.75 * m + 0.25 * g.double()
        torch.testing.assert_close(opt.state[w]["m"].double(), m, rtol=2e-5, atol=1e-9)
    assert torch.equal(w.detach(), torch.ones(1000))


def test_foreach_equals_loop_bit_exact():
    shapes = SHAPES + [(32, 16, 3, 3), (1,)]
    a, b = _params(3, shapes, pm1=False), _params(3, shapes, pm1=False)
    oa = Bop(a, gamma=0.2, tau=2e-3, foreach=True)
    ob = Bop(b, gamma=0.2, tau=2e-3, foreach=False)
    for step in range(40):
        if step == 20:
            for o in (oa, ob):
                o.param_groups[0].update(gamma=0.05, tau=0.0)
        gs = _grads(step, 3, shapes)
        _set_grads(a, gs)
        _set_grads(b, gs)
        oa.step()
        ob.step()
        for pa, pb in zip(a, b, strict=True):
            assert torch.equal(pa, pb)
            assert torch.equal(oa.state[pa]["m"], ob.state[pb]["m"])
        assert torch.equal(oa.last_flip_ratio, ob.last_flip_ratio)


def test_default_path_is_loop_on_cpu_and_flip_ratio_type():
    ps = _params()
    opt = Bop(ps, gamma=0.5, tau=0.0)
    assert opt.last_flip_ratio is None
    _set_grads(ps, _grads(1))
    opt.step()
    r = opt.last_flip_ratio
    assert isinstance(r, torch.Tensor) and r.dim() == 0 and 0.0 < float(r) < 1.0


@pytest.mark.parametrize("gamma,tau", [(0.0, 1e-8), (1.5, 1e-8), (-1e-4, 1e-8), (1e-4, -1e-8),
                                       (float("nan"), 0.0), (1e-4, float("nan"))])
def test_invalid_hyperparameters(gamma, tau):
    with pytest.raises(ValueError):
        Bop(_params(), gamma=gamma, tau=tau)


def test_invalid_scheduled_hyperparameters():
    ps = _params()
    opt = Bop(ps)
    _set_grads(ps, _grads(0))
    opt.param_groups[0]["gamma"] = 0.0
    with pytest.raises(ValueError):
        opt.step()
    opt.param_groups[0].update(gamma=1e-3, tau=-1.0)
    with pytest.raises(ValueError):
        opt.step()


def test_gamma_1_allowed():
    Bop(_params(), gamma=1.0, tau=0.0)


def test_state_dict_round_trip():
    """Saving and restoring Bop (momentum included) continues exactly."""
    a = _params(5, pm1=False)
    opt = Bop(a, gamma=0.1, tau=1e-3)
    for step in range(4):
        _set_grads(a, _grads(step, 5))
        opt.step()
    buf = io.BytesIO()
    torch.save({"w": [p.detach().clone() for p in a], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    assert all("m" in s for s in saved["opt"]["state"].values())
    assert any(s["m"].abs().sum() > 0 for s in saved["opt"]["state"].values())
    for step in range(4, 10):  # uninterrupted
        _set_grads(a, _grads(step, 5))
        opt.step()
    b = [torch.nn.Parameter(w) for w in saved["w"]]
    opt2 = Bop(b, gamma=0.5, tau=0.5)  # hyperparameters come back from the state dict
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0]["gamma"] == 0.1
    for step in range(4, 10):
        _set_grads(b, _grads(step, 5))
        opt2.step()
    for pa, pb in zip(a, b, strict=True):
        assert torch.equal(pa, pb)
        assert torch.equal(opt.state[pa]["m"], opt2.state[pb]["m"])


def test_no_weight_decay_and_grads_skipped():
    assert "weight_decay" not in Bop(_params()).defaults
    ps = _params(pm1=False)
    opt = Bop(ps, gamma=1.0, tau=0.0)
    before = ps[1].detach().clone()
    for i, p in enumerate(ps):
        p.grad = None if i == 1 else torch.zeros_like(p)
    opt.step()
    assert torch.equal(ps[1], before)  # no grad: untouched, no state
    assert ps[1] not in opt.state
    assert opt._count == sum(p.numel() for i, p in enumerate(ps) if i != 1)
    # zero gradient and tau = 0: weights only mapped to +-1, nothing decays
    for i, p in enumerate(ps):
        if i != 1:
            assert torch.equal(p.detach().abs(), torch.ones_like(p))
    for p in ps:
        p.grad = None
    opt.step()
    assert opt.last_flip_ratio is None


def test_multiple_param_groups():
    a, b = _params(1), _params(2)
    opt = Bop([{"params": a, "gamma": 1.0, "tau": 0.0}, {"params": b, "gamma": 1.0, "tau": 1e9}])
    for p in a + b:
        p.grad = p.detach().clone()  # same sign as w: flip unless tau blocks it
    opt.step()
    for p, q in zip(a, _params(1), strict=True):
        assert torch.equal(p, -q)
    for p, q in zip(b, _params(2), strict=True):
        assert torch.equal(p, q)
    n_a = sum(p.numel() for p in a)
    assert opt.last_flip_ratio.item() == pytest.approx(n_a / (n_a + sum(p.numel() for p in b)))


def test_bf16_weights():
    w = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
    opt = Bop([w], gamma=1.0, tau=0.0)
    w.grad = torch.linspace(-1, 1, 64).to(torch.bfloat16)
    opt.step()
    assert w.dtype == torch.bfloat16 and opt.state[w]["m"].dtype == torch.bfloat16
    assert torch.equal(w.float(), torch.where(w.grad.float() > 0, -1.0, 1.0))
