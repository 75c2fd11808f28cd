"""Sign functions, activation and weight binarizers: values and gradients vs formulas."""

import pytest
import torch

from bnnlab.binary import (
    ACTIVATIONS,
    WEIGHTS,
    approx_sign,
    approx_sign_detach,
    magnitude_aware_sign,
    make_activation,
    make_weight_quantizer,
    sign,
    sign_weight,
    ste_sign,
)
from bnnlab.errors import UnknownNameError

EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 1e-8, -1e-8, 1.0 - 2**-20, -(1.0 - 2**-20),
         1.0 + 2**-20, 3.0, -7.0]


def _x(dtype=torch.float32, n=2000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen) * 1.5
    return torch.cat([x, torch.tensor(EDGES)]).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_sign_values_and_dtype(dtype):
    x = _x(dtype)
    y = sign(x)
    assert y.dtype == dtype
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0).to(dtype))
    assert sign(torch.zeros(3, dtype=dtype)).tolist() == [1.0, 1.0, 1.0]
    assert sign(torch.tensor([-0.0], dtype=dtype)).item() == 1.0
    t = sign(x, zero="torch")
    assert t.dtype == dtype and torch.equal(t, torch.sign(x))
    assert sign(torch.zeros(2, dtype=dtype), zero="torch").tolist() == [0.0, 0.0]


def test_sign_bad_zero_mode():
    with pytest.raises(ValueError):
        sign(torch.ones(1), zero="neg")


@pytest.mark.parametrize("fn", [ste_sign, approx_sign, sign_weight, magnitude_aware_sign])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_binarizers_output_binary_and_dtype(fn, dtype):
    x = _x(dtype).view(-1, 5)
    y = fn(x)
    assert y.dtype == dtype
    if fn is magnitude_aware_sign:
        y = y / x.abs().mean(dim=1, keepdim=True)
        y = y.sign()
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0).to(dtype))


def _grad(fn, x, g, **kw):
    x = x.clone().requires_grad_(True)
    fn(x, **kw).backward(g)
    return x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_ste_gradient(dtype):
    x = _x(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    expected = g * (x.abs() <= 1).to(dtype)
    assert torch.equal(_grad(ste_sign, x, g), expected)
    # exactly at +-1 the gradient passes, just outside it does not
    edge = torch.tensor([1.0, -1.0, 1.0 + torch.finfo(dtype).eps, -1.0 - torch.finfo(dtype).eps], dtype=dtype)
    assert _grad(ste_sign, edge, torch.ones_like(edge)).tolist() == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_approx_sign_gradient(dtype):
    x = _x(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    expected = g * (2 - 2 * x.abs()) * (x.abs() <= 1).to(dtype)
    torch.testing.assert_close(_grad(approx_sign, x, g), expected, rtol=1e-6, atol=1e-7)
    at = torch.tensor([0.0, 1.0, -1.0, 0.5, -0.5, 2.0], dtype=dtype)
    assert _grad(approx_sign, at, torch.ones_like(at)).tolist() == [2.0, 0.0, 0.0, 1.0, 1.0, 0.0]


def test_approx_sign_gradient_bf16():
    x = _x(torch.bfloat16)
    g = torch.ones_like(x)
    expected = ((2 - 2 * x.double().abs()).clamp(min=0)).to(torch.bfloat16)
    torch.testing.assert_close(_grad(approx_sign, x, g), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_approx_detach_matches_fused_approx(dtype):
    """The official detach-trick form and the fused autograd function agree."""
    x = _x(dtype).view(5, -1)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    torch.testing.assert_close(_grad(approx_sign_detach, x, g), _grad(approx_sign, x, g),
                               rtol=1e-6, atol=1e-6)
    # forward: same values except at 0, where the official default is torch.sign (0)
    assert torch.equal(approx_sign_detach(x, zero="pos"), approx_sign(x))
    assert torch.equal(approx_sign_detach(x), torch.sign(x))
    assert approx_sign_detach(torch.zeros(1, dtype=dtype)).item() == 0.0
    assert approx_sign(torch.zeros(1, dtype=dtype)).item() == 1.0


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (6, 10), (7,)])
def test_magnitude_aware_forward(shape):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 0.8
    w.view(-1)[:3] = torch.tensor([0.0, 1.0, -1.0])
    scale = w.abs().mean() if w.dim() == 1 else w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    expected = scale * torch.where(w >= 0, 1.0, -1.0)
    torch.testing.assert_close(magnitude_aware_sign(w), expected, rtol=0, atol=0)
    torch.testing.assert_close(magnitude_aware_sign(w, grad="official"), expected, rtol=0, atol=0)


def test_magnitude_aware_gradients():
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(5)) * 0.9
    w.view(-1)[:4] = torch.tensor([1.0, -1.0, 0.0, 1.5])
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(6))
    scale = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    paper = _grad(magnitude_aware_sign, w, g)
    torch.testing.assert_close(paper, g * scale * (w.abs() < 1).float(), rtol=1e-6, atol=0)
    assert paper.view(-1)[:2].tolist() == [0.0, 0.0]  # paper: strict |W| < 1
    official = _grad(magnitude_aware_sign, w, g, grad="official")
    assert torch.equal(official, g * (w.abs() <= 1).float())
    assert official.view(-1)[0] == g.view(-1)[0]  # official: |W| <= 1 passes
    with pytest.raises(ValueError):
        magnitude_aware_sign(w, grad="larq")


def test_sign_weight_gradient():
    w = _x().view(-1, 5)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(7))
    assert torch.equal(_grad(sign_weight, w, g), g * (w.abs() <= 1).float())


def test_registries_and_unknown_names():
    assert {"ste", "approx", "approx-detach", "real", "relu", "clip", "leaky-clip"} <= set(ACTIVATIONS)
    assert {"sign", "scaled", "scaled-official", "real"} <= set(WEIGHTS)
    with pytest.raises(UnknownNameError, match="Did you mean 'approx'"):
        make_activation("aprox")
    with pytest.raises(UnknownNameError, match="Did you mean 'scaled'"):
        make_weight_quantizer("scaled2")
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        ACTIVATIONS.get("nope")


def test_quantizer_modules():
    x = _x().view(-1, 5)
    assert torch.equal(make_activation("ste")(x), ste_sign(x))
    assert torch.equal(make_activation("approx")(x), approx_sign(x))
    assert torch.equal(make_activation("real")(x), x)
    assert torch.equal(make_activation(None)(x), x)
    assert torch.equal(make_activation("relu")(x), torch.relu(x))
    assert torch.equal(make_activation("clip")(x), x.clamp(-1, 1))
    assert not make_activation("clip").is_binary and make_activation("approx").is_binary
    assert make_activation("approx-detach").zero == "torch"
    assert torch.equal(make_weight_quantizer("sign")(x), sign(x))
    assert torch.equal(make_weight_quantizer("real")(x), x)
    assert not make_weight_quantizer("real").is_binary and make_weight_quantizer("scaled").is_binary
    q = make_weight_quantizer("scaled-official")
    assert q.grad == "official"
    mod = torch.nn.Identity()
    assert make_activation(mod) is mod and make_weight_quantizer(mod) is mod
