"""The model zoo: every registered model builds, trains one step, and keeps its contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnnlab.binary import BinaryConv2d, BinaryLinear, QuantLayer, RPReLU, RSign, set_quantizers
from bnnlab.errors import BnnlabError, UnknownNameError
from bnnlab.models import MODELS, BnnModel, create_model, list_models, model_info

EXPECTED = {
    "bireal18", "bireal34", "bireal18-real", "bireal34-real", "bireal20", "xnornet18", "reactnet-a",
    "reactnet18", "binarynet", "alexnet-binary", "xnornet", "resnet18", "resnet34", "resnet50", "mlp",
    "binary-mlp", "binary-cnn-tiny",
}
REAL_MODELS = {"bireal18-real", "bireal34-real", "resnet18", "resnet34", "resnet50", "mlp"}
BINARY_MODELS = sorted(EXPECTED - REAL_MODELS)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _step(model: BnnModel, info, input_size: int, in_channels: int, num_classes: int, batch: int = 2):
    """One forward + backward; checks shapes and that every parameter gets a gradient."""
    model.train()
    x = torch.randn(batch, in_channels, input_size, input_size)
    features = model.forward_features(x)
    assert features.shape[0] == batch and features.shape[1] == model.num_features
    logits = model.forward_head(features)
    assert logits.shape == (batch, num_classes)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{info.name}: parameters without gradient: {missing[:5]}"
    for name, p in model.binary_parameters():
        assert p.grad.abs().sum() > 0, f"{info.name}: binary weight {name} got a zero gradient"
    if info.name not in REAL_MODELS:
        assert model.binary_parameters(), f"{info.name} has no binary weights"


def test_registered_names():
    assert set(list_models()) == EXPECTED
    assert list_models() == sorted(EXPECTED)


# Large nets, and 18-layer nets whose conv shapes bireal18/reactnet18 already cover: forward
# only at paper size in the fast suite (backward is covered at proxy size and by the slow test).
LARGE = {"bireal34", "bireal34-real", "reactnet-a", "resnet34", "resnet50", "bireal18-real", "xnornet18",
         "resnet18"}


@pytest.mark.parametrize("name", sorted(EXPECTED - LARGE))
def test_paper_size_forward_backward(name):
    info = model_info(name)
    model = create_model(name)
    assert isinstance(model, BnnModel) and model.input_size == info.input_size
    _step(model, info, info.input_size, info.in_channels, info.num_classes)


@pytest.mark.parametrize("name", sorted(LARGE))
def test_paper_size_forward_large(name):
    info = model_info(name)
    model = create_model(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, info.in_channels, info.input_size, info.input_size))
    assert logits.shape == (2, info.num_classes) and torch.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LARGE))
def test_paper_size_forward_backward_large(name):
    info = model_info(name)
    _step(create_model(name), info, info.input_size, info.in_channels, info.num_classes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_proxy_forward_backward(name):
    info = model_info(name)
    model = create_model(name, num_classes=7, **info.proxy)
    size = info.proxy.get("input_size", info.input_size)
    _step(model, info, size, info.in_channels, 7)


@pytest.mark.parametrize("name", ["bireal18", "reactnet-a", "reactnet18", "xnornet18", "resnet18",
                                  "bireal20", "binary-cnn-tiny", "binary-mlp"])
def test_proxy_on_digits_shape(name):
    """The CPU proxies also run on 8x8 single-channel digits (odd sizes included)."""
    info = model_info(name)
    kw = dict(info.proxy, input_size=8, in_channels=1, num_classes=10)
    model = create_model(name, **kw).eval()
    with torch.no_grad():
        for size in (8, 7) if name != "binary-mlp" else (8,):
            assert model(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_model_info_fields():
    for name in list_models():
        info = model_info(name)
        assert info.name == name and info.description and "arXiv:" in info.paper
        assert info.input_size > 0 and info.num_classes > 0 and info.in_channels > 0
        assert set(info.proxy) <= set(info.options)
        for key in ("num_classes", "in_channels", "input_size", "width", "activation", "weight"):
            assert key in info.options, (name, key)
    assert model_info("bireal18").input_size == 224
    assert model_info("binarynet").input_size == 32 and model_info("binarynet").num_classes == 10
    assert model_info("binary-mlp").in_channels == 1 and model_info("binary-mlp").input_size == 8
    assert callable(MODELS.get("mlp"))


# ------------------------------------------------------------------ parameter names


def _keys(model: nn.Module) -> list[str]:
    return list(model.state_dict())


def test_bireal_real_initialiser_loads_into_bireal18():
    kw = dict(width=0.25, stem="cifar", input_size=32, num_classes=10)
    real = create_model("bireal18-real", **kw)
    binary = create_model("bireal18", activation="approx", weight="scaled", **kw)
    assert _keys(real) == _keys(binary)
    binary.load_state_dict(real.state_dict(), strict=True)
    for act in ("relu", "leaky-clip"):
        assert _keys(create_model("bireal18-real", activation=act, **kw)) == _keys(binary)
    assert _keys(create_model("bireal34-real", **kw)) == _keys(create_model("bireal34", **kw))
    assert not real.binary_parameters()


@pytest.mark.parametrize("name", BINARY_MODELS)
def test_state_dict_keys_do_not_depend_on_quantizers(name):
    proxy = model_info(name).proxy
    a = create_model(name, **proxy)
    b = create_model(name, activation="real", weight="real", **proxy)
    c = create_model(name, activation="ste", weight="sign", **proxy)
    assert _keys(a) == _keys(b) == _keys(c)
    set_quantizers(b, activation="approx", weight="scaled")
    assert _keys(a) == _keys(b)
    assert {n for n, _ in b.binary_parameters()} == {n for n, _ in a.binary_parameters()}


def test_binary_mlp_and_mlp_share_parameter_names():
    assert _keys(create_model("mlp")) == _keys(create_model("binary-mlp"))


# ------------------------------------------------------------------ binary parameters


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_binary_parameters_are_the_binary_quantized_weights(name):
    model = create_model(name, **model_info(name).proxy)
    expected = {f"{n}.weight" for n, m in model.named_modules()
                if isinstance(m, QuantLayer) and m.has_binary_weight}
    got = dict(model.binary_parameters())
    assert set(got) == expected
    params = dict(model.named_parameters())
    assert all(got[n] is params[n] for n in got)
    # first conv / first linear and the classifier stay real
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    last = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    binary_ids = {id(p) for p in got.values()}
    if name != "binarynet":  # BinaryNet binarizes every weight (first conv sees real input)
        assert id(first.weight) not in binary_ids
        assert id(last.weight) not in binary_ids
        assert type(first) in (nn.Conv2d, nn.Linear) and type(last) in (nn.Conv2d, nn.Linear)


# ------------------------------------------------------------------ architectures


def test_bireal18_layout():
    model = create_model("bireal18")
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 16 and all(m.kernel_size == (3, 3) for m in convs)
    assert [len(s) for s in model.stages] == [4, 4, 4, 4]
    assert model.num_features == 512 and model.fc.in_features == 512
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, nn.MaxPool2d)
    downs = [m.downsample for m in model.modules() if getattr(m, "downsample", None) is not None]
    assert len(downs) == 3
    assert all(isinstance(d[0], nn.AvgPool2d) and type(d[1]) is nn.Conv2d for d in downs)
    assert convs[0].input_quantizer.name == "approx" and convs[0].weight_quantizer.name == "scaled"
    assert [len(s) for s in create_model("bireal34").stages] == [6, 8, 12, 6]
    cifar = create_model("bireal18", input_size=32)  # stem chosen from the input size
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, nn.Identity)


def test_block_shortcut_and_xnornet18():
    model = create_model("bireal18", shortcut="block")
    assert [len(s) for s in model.stages] == [2, 2, 2, 2]
    assert sum(isinstance(m, BinaryConv2d) for m in model.modules()) == 16
    x18 = create_model("xnornet18")
    conv = next(m for m in x18.modules() if isinstance(m, BinaryConv2d))
    assert conv.input_quantizer.name == "ste" and conv.weight_quantizer.name == "scaled"
    assert [len(s) for s in x18.stages] == [2, 2, 2, 2]
    small = create_model("bireal20")
    assert sum(isinstance(m, BinaryConv2d) for m in small.modules()) == 18
    assert small.num_features == 64


def test_reactnet_a_layout_and_switches():
    model = create_model("reactnet-a")
    assert len(model.blocks) == 13 and model.num_features == 1024
    widths = [(b.conv3x3.in_channels, b.conv1x1.out_channels, b.conv3x3.stride[0]) for b in model.blocks]
    assert widths == [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
                      *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
    assert model.conv1.stride == (2, 2) and model.conv1.out_channels == 32
    assert isinstance(model.blocks[0].conv3x3.input_quantizer, RSign)
    assert isinstance(model.blocks[0].act1, RPReLU)
    assert model.blocks[0].conv3x3.weight_quantizer.name == "sign"
    plain = create_model("reactnet-a", rsign=False, rprelu="prelu", **model_info("reactnet-a").proxy)
    assert not any(isinstance(m, (RSign, RPReLU)) for m in plain.modules())
    assert any(isinstance(m, nn.PReLU) for m in plain.modules())
    none = create_model("reactnet-a", rprelu="none", **model_info("reactnet-a").proxy)
    assert not any(isinstance(m, (RPReLU, nn.PReLU)) for m in none.modules())


def test_reactnet_doubling_block_equals_two_convs():
    """One in->2in 1x1 conv with a self-concatenated shortcut == the official two in->in convs."""
    model = create_model("reactnet-a", **model_info("reactnet-a").proxy).eval()
    block = model.blocks[0]
    cin = block.conv3x3.in_channels
    x = torch.randn(2, cin, 8, 8)
    with torch.no_grad():
        out = block.act1(block.bn1(block.conv3x3(x)) + block.pool(x))
        xb = block.conv1x1.input_quantizer(out)
        w = block.conv1x1.quantized_weight()
        halves = [torch.nn.functional.conv2d(xb, w[i * cin:(i + 1) * cin]) for i in range(2)]
        y = torch.cat(halves, 1)
        ref = block.act2(block.bn2(y) + torch.cat([out, out], 1))
        assert torch.allclose(block(x), ref, atol=1e-5)


def test_reactnet18_is_bireal18_with_rsign_rprelu():
    model = create_model("reactnet18")
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 16 and all(isinstance(c.input_quantizer, RSign) for c in convs)
    assert sum(isinstance(m, RPReLU) for m in model.modules()) == 16


def test_binarynet_layout():
    model = create_model("binarynet")
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    dense = [m for m in model.modules() if isinstance(m, BinaryLinear)]
    assert [c.out_channels for c in convs] == [128, 128, 256, 256, 512, 512]
    assert [d.out_features for d in dense] == [1024, 1024, 10]
    assert not convs[0].input_quantizer.is_binary and convs[1].input_quantizer.is_binary
    assert all(m.has_binary_weight for m in convs + dense)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 9 and all(n.weight is None and n.bias is not None for n in norms)
    assert all(m.bias is None for m in convs + dense)


def test_alexnets_and_resnets():
    alex = create_model("alexnet-binary")
    assert type(alex.features[0]) is nn.Conv2d and type(alex.fc) is nn.Linear
    assert alex.classifier[0].in_features == 256 * 6 * 6
    xnor = create_model("xnornet")
    assert xnor.features[0].out_channels == 96
    assert xnor.features[4].conv.weight_quantizer.name == "scaled"
    r = create_model("resnet18", stem="cifar", in_channels=1)
    assert r.conv1.kernel_size == (3, 3) and r.conv1.in_channels == 1 and isinstance(r.maxpool, nn.Identity)
    tv = pytest.importorskip("torchvision.models")
    assert _keys(create_model("resnet50")) == _keys(tv.resnet50(weights=None))
    assert _keys(create_model("resnet18")) == _keys(tv.resnet18(weights=None))


def test_width_multiplier():
    model = create_model("bireal18", width=0.5, stem="cifar", input_size=32)
    assert model.num_features == 256
    tiny = create_model("bireal20", width=0.1)
    assert min(m.out_channels for m in tiny.modules() if isinstance(m, nn.Conv2d)) >= 2
    with pytest.raises(BnnlabError, match="width"):
        create_model("bireal18", width=0)


# ------------------------------------------------------------------ errors


def test_unknown_model_name_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'bireal18'") as err:
        create_model("bireal81")
    assert "reactnet-a" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnknownNameError):
        model_info("resnet19x")


def test_bad_options_are_one_line_errors():
    with pytest.raises(BnnlabError, match=r"model 'bireal18' has no option 'rsign'") as err:
        create_model("bireal18", rsign=True)
    assert "\n" not in str(err.value)
    with pytest.raises(BnnlabError, match="stem"):
        create_model("bireal18", stem="tiny")
    with pytest.raises(BnnlabError, match="shortcut"):
        create_model("bireal18", shortcut="none")
    with pytest.raises(BnnlabError, match="rprelu"):
        create_model("reactnet-a", rprelu="relu")
    with pytest.raises(UnknownNameError, match="Did you mean 'approx'"):
        create_model("bireal18", activation="aprox")
    with pytest.raises(BnnlabError, match="real-valued"):
        create_model("bireal18-real", activation="approx")
    with pytest.raises(BnnlabError, match="real-valued"):
        create_model("resnet18", weight="sign")
    with pytest.raises(BnnlabError, match="too small"):
        create_model("alexnet-binary", input_size=32)
    with pytest.raises(BnnlabError, match="input_size"):
        create_model("binarynet", input_size="32")
