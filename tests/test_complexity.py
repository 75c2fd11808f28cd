"""Operation and memory counts against the papers' numbers (design doc 3.4/3.5)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from bnnlab.complexity import ModelSummary, summarize
from bnnlab.models import create_model


@pytest.fixture(scope="module")
def bireal18() -> ModelSummary:
    return summarize("bireal18")


def _close(value, target, rel):
    assert abs(value - target) <= rel * target, f"{value:.4g} not within {rel:.0%} of {target:.4g}"


def test_bireal18_matches_paper(bireal18):
    t = bireal18.totals
    _close(t["ops"], 1.63e8, 0.02)        # ReActNet README / Bi-Real paper
    _close(t["bops"], 1.68e9, 0.01)       # Bi-Real paper table
    _close(t["flops"], 1.39e8, 0.01)
    _close(t["memory_mbit"], 33.6, 0.01)  # Bi-Real paper: 33.6 Mbit vs 374.1 Mbit (11.14x)
    _close(t["real_memory_mbit"], 374.1, 0.005)
    _close(t["memory_saving"], 11.14, 0.01)
    assert t["params"] == sum(p.numel() for p in create_model("bireal18").parameters())
    assert bireal18.input_shape == (1, 3, 224, 224)


def test_reactnet_a_matches_readme():
    t = summarize("reactnet-a").totals
    _close(t["ops"], 0.87e8, 0.03)
    _close(t["bops"], 4.82e9, 0.01)
    _close(t["flops"], 0.12e8, 0.03)  # = OPs - BOPs / 64 (first conv + FC)


def test_real_resnet18_flops():
    t = summarize("resnet18").totals
    _close(t["flops"], 1.8e9, 0.03)
    assert t["bops"] == 0 and t["binary_params"] == 0
    assert t["memory_saving"] == pytest.approx(1.0)


def test_layer_classification(bireal18):
    rows = {r.name: r for r in bireal18.layers}
    assert rows["conv1"].flops == 118_013_952 and rows["conv1"].bops == 0  # 7x7x3x64 at 112x112
    assert rows["fc"].flops == 512_000 and rows["fc"].real_params == 513_000
    down = rows["stages.1.0.downsample.1"]
    assert down.flops > 0 and not down.binary_weight
    conv = rows["stages.0.0.conv"]
    assert conv.binary_input and conv.binary_weight and conv.bops == 56 * 56 * 64 * 64 * 9
    assert conv.binary_params == 64 * 64 * 9 and conv.real_params == 0
    assert rows["stages.0.0.bn"].real_params == 128 and rows["stages.0.0.bn"].macs == 0


def test_binary_weights_with_real_input_count_as_flops():
    s = summarize("binarynet", width=0.25)
    first = s.layers[[r.type for r in s.layers].index("BinaryConv2d")]
    assert first.binary_weight and not first.binary_input and first.flops > 0 and first.bops == 0
    assert sum(r.bops > 0 for r in s.layers) == 8  # 5 convs + 3 dense


def test_rsign_and_real_activation_classification():
    s = summarize("reactnet-a", width=0.25, input_size=32)
    assert s.totals["bops"] > 0
    model = create_model("reactnet-a", width=0.25, input_size=32, activation="real")
    t = summarize(model).totals  # RSign around a real quantizer: real input -> FLOPs
    assert t["bops"] == 0 and t["binary_params"] > 0


def test_input_size_override_and_training_mode_restored():
    s = summarize("bireal18", input_size=32, width=0.25)
    assert s.input_shape == (1, 3, 32, 32)
    model = create_model("binary-mlp")
    model.train()
    out = summarize(model)
    assert model.training and out.input_shape == (1, 1, 8, 8) and out.model == "binary-mlp"
    with pytest.raises(TypeError):
        summarize(model, width=2)


def test_exports(bireal18):
    d = bireal18.to_dict()
    assert json.loads(json.dumps(d))["totals"]["ops"] == pytest.approx(bireal18.totals["ops"])
    assert len(d["layers"]) == len(bireal18.layers)
    frame = bireal18.to_frame()
    assert {"name", "binary_params", "real_params", "bops", "flops"} <= set(frame.columns)
    assert frame["bops"].sum() == bireal18.totals["bops"]
    md = bireal18.to_markdown()
    assert "| params |" in md and "OPs" in md
    assert "stages.0.0.conv" in bireal18.to_markdown(layers=True)
    from rich.console import Console
    from rich.table import Table

    table = bireal18.rich_table()
    assert isinstance(table, Table)
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(table)
    assert "conv1" in console.export_text()


def test_no_grad_state_untouched():
    model = create_model("binary-cnn-tiny")
    summarize(model)
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in model.parameters())
