"""Smoke test of ``bnnlab bench`` in quick mode: every figure present, no timing assertions."""

import io
import json
import math

import pytest
import torch

from bnnlab.bench import official_bireal20, print_bench, run_bench

RATIO_KEYS = {"train_bireal18", "train_bireal20", "bnnlab_vs_reference", "bop_vs_adam_foreach_step",
              "bop_vs_adam_state_bytes"}


@pytest.fixture(scope="module")
def result():
    return run_bench(quick=True, repeats=1, batch_size=2, threads=1, json=True)


def test_quick_bench_ratios(result):
    assert RATIO_KEYS <= set(result["ratios"])
    for key, value in result["ratios"].items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, key
    assert result["ratios"]["bop_vs_adam_state_bytes"] == pytest.approx(0.5, abs=1e-4)
    env = result["env"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["dtype"] == "float32"
    assert result["optimizer"]["n_weights"] > 10_000_000
    json.dumps(result)  # JSON-serialisable


def test_quick_bench_cli_figure(result):
    cli = result["cli"]
    assert cli["help_s"] is None or cli["help_s"] > 0
    assert "quickstart_s" not in cli


def test_print_bench(result):
    from rich.console import Console

    buf = io.StringIO()
    print_bench(result, console=Console(file=buf, width=120))
    text = buf.getvalue()
    for key in RATIO_KEYS:
        assert key in text
    assert "threads" in text and torch.__version__ in text


def test_reference_net_is_bireal20_sized():
    from bnnlab.models import create_model

    ref = official_bireal20()
    ours = create_model("bireal20", num_classes=10)
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters())
    x = torch.randn(2, 3, 32, 32)
    assert ref(x).shape == ours(x).shape == (2, 10)


def test_bad_precision():
    with pytest.raises(ValueError):
        run_bench(precision="fp8", quick=True)
