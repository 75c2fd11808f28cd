"""Binary layers and the model helpers around them."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnnlab.binary import (
    BinaryConv2d,
    BinaryLinear,
    RPReLU,
    RSign,
    binary_weights,
    magnitude_aware_sign,
    set_quantizers,
    sign,
    snap_binary_weights,
    split_parameters,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("weight", ["sign", "scaled", "scaled-official"])
@pytest.mark.parametrize("act", ["ste", "approx"])
def test_binary_conv_equals_conv_on_quantized(act, weight):
    conv = BinaryConv2d(4, 6, 3, stride=2, padding=1, input_quantizer=act, weight_quantizer=weight)
    x = torch.randn(2, 4, 9, 9)
    w = magnitude_aware_sign(conv.weight) if weight.startswith("scaled") else sign(conv.weight)
    expected = F.conv2d(sign(x), w, None, stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected)
    assert conv.has_binary_weight


def test_binary_linear_equals_linear_on_quantized():
    lin = BinaryLinear(7, 3, bias=True, input_quantizer="ste", weight_quantizer="sign")
    x = torch.randn(5, 7)
    torch.testing.assert_close(lin(x), F.linear(sign(x), sign(lin.weight), lin.bias))


def test_real_real_equals_plain_layers():
    conv = BinaryConv2d(3, 5, 3, padding=1, bias=True, input_quantizer="real", weight_quantizer="real")
    ref = nn.Conv2d(3, 5, 3, padding=1, bias=True)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(conv(x), ref(x))
    assert not conv.has_binary_weight
    lin = BinaryLinear(4, 2, input_quantizer="real", weight_quantizer="real")
    x = torch.randn(3, 4)
    assert torch.equal(lin(x), F.linear(x, lin.weight))


def test_binary_conv_gradients_flow():
    conv = BinaryConv2d(3, 4, 3, padding=1, input_quantizer="approx", weight_quantizer="scaled")
    x = (torch.randn(2, 3, 6, 6) * 0.5).requires_grad_(True)
    conv(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_rsign_threshold_per_channel():
    rs = RSign(3, quantizer="ste")
    with torch.no_grad():
        rs.alpha.copy_(torch.tensor([0.5, -0.5, 0.0]).view(1, 3, 1, 1))
    x = torch.tensor([0.4, 0.6, -0.6, -0.4, 0.0, -0.1]).view(1, 1, 1, 6).expand(1, 3, 1, 6).clone()
    y = rs(x)
    assert y[0, 0, 0].tolist() == [-1, 1, -1, -1, -1, -1]  # sign(x - 0.5)
    assert y[0, 1, 0].tolist() == [1, 1, -1, 1, 1, 1]  # sign(x + 0.5)
    assert y[0, 2, 0].tolist() == [1, 1, -1, -1, 1, -1]  # plain sign, sign(0) = +1
    # gradient reaches the threshold (minus the input's)
    xg = x.clone().requires_grad_(True)
    rs(xg).sum().backward()
    torch.testing.assert_close(rs.alpha.grad.view(-1), -xg.grad.sum(dim=(0, 2, 3)))
    # 2-D input
    assert rs(torch.zeros(4, 3)).shape == (4, 3)


def test_rprelu_formula():
    m = RPReLU(2)
    with torch.no_grad():
        m.gamma.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
        m.zeta.copy_(torch.tensor([0.1, 0.2]).view(1, 2, 1, 1))
        m.beta.copy_(torch.tensor([0.25, 0.5]).view(1, 2, 1, 1))
    x = torch.randn(3, 2, 4, 4)
    gamma, zeta, beta = m.gamma, m.zeta, m.beta
    expected = torch.where(x > gamma, x - gamma + zeta, beta * (x - gamma) + zeta)
    torch.testing.assert_close(m(x), expected)
    assert torch.allclose(RPReLU(2).beta, torch.tensor(0.25))
    x2 = torch.randn(5, 2)
    torch.testing.assert_close(m(x2), m(x2.view(5, 2, 1, 1)).view(5, 2))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.b1 = BinaryConv2d(4, 4, 3, padding=1, input_quantizer=RSign(4), weight_quantizer="scaled")
        self.act = RPReLU(4)
        self.b2 = BinaryConv2d(4, 4, 3, padding=1, input_quantizer="ste", weight_quantizer="sign")
        self.realq = BinaryConv2d(4, 4, 1, input_quantizer="real", weight_quantizer="real")
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.bn(self.stem(x))
        x = self.act(self.b1(x)) + x
        x = self.realq(self.b2(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_split_parameters():
    net = _Net()
    net.bn.weight.requires_grad_(False)
    binary, other = split_parameters(net)
    assert {id(p) for p in binary} == {id(net.b1.weight), id(net.b2.weight)}
    ids_other = {id(p) for p in other}
    assert id(net.bn.weight) not in ids_other and id(net.bn.weight) not in {id(p) for p in binary}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert ids_other | {id(p) for p in binary} == trainable
    assert not ({id(p) for p in binary} & ids_other)
    assert id(net.realq.weight) in ids_other and id(net.b1.input_quantizer.alpha) in ids_other
    assert [n for n, _ in binary_weights(net)] == ["b1.weight", "b2.weight"]
    net.b2.weight.requires_grad_(False)
    binary, _ = split_parameters(net)
    assert [id(p) for p in binary] == [id(net.b1.weight)]


def test_set_quantizers_keeps_state_dict_keys():
    net = _Net()
    keys = list(net.state_dict())
    alpha = net.b1.input_quantizer.alpha
    set_quantizers(net, activation="real", weight="real")
    assert list(net.state_dict()) == keys
    assert net.b1.input_quantizer.alpha is alpha  # RSign kept, with its threshold
    assert not net.b2.has_binary_weight and not net.b2.input_quantizer.is_binary
    set_quantizers(net, activation="approx", weight="sign", only=["b2"])
    assert net.b2.has_binary_weight and net.b2.input_quantizer.is_binary
    assert not net.b1.has_binary_weight
    assert list(net.state_dict()) == keys
    x = torch.randn(2, 3, 6, 6)
    net(x).sum().backward()


def test_snap_binary_weights():
    net = _Net()
    before = net.realq.weight.detach().clone()
    n = snap_binary_weights(net)
    assert n == net.b1.weight.numel() + net.b2.weight.numel()
    for w in (net.b1.weight, net.b2.weight):
        assert set(w.detach().unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(net.realq.weight, before)
    # with +-1 weights the magnitude-aware scale is exactly 1
    assert torch.equal(net.b1.quantized_weight(), net.b1.weight)
