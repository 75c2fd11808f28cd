"""``bnnlab compare``: axes parsing and product (no training), errors, summary math, and a tiny
end-to-end run through the CLI into a temporary store."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from bnnlab.cli import app
from bnnlab.compare import (
    build_axes,
    check_key,
    epochs_to_target,
    format_table,
    helper_steps,
    parse_vary,
    split_values,
    summarize,
    target_steps,
    variant_label,
    variant_steps,
    variants,
)
from bnnlab.errors import BnnlabError


def test_axes_product_in_flag_order():
    axes = build_axes({"optimizers": "adam,bop", "activations": "ste,approx"}, ["optim.lr=1e-3,1e-2"])
    assert list(axes) == ["optim.name", "model.activation", "optim.lr"]
    combos = variants(axes)
    assert len(combos) == 8
    assert combos[0] == {"optim.name": "adam", "model.activation": "ste", "optim.lr": "1e-3"}
    assert combos[-1] == {"optim.name": "bop", "model.activation": "approx", "optim.lr": "1e-2"}
    assert variant_label(combos[1]) == "optim.name=adam, model.activation=ste, optim.lr=1e-2"
    assert variants({}) == [{}] and variant_label({}) == "base"


def test_vary_parsing():
    assert split_values("a, b,[1,2],{x: 1, y: 2}") == ["a", "b", "[1,2]", "{x: 1, y: 2}"]
    assert parse_vary(["model.options.hidden=32,64", "init.from=previous"]) == {
        "model.options.hidden": ["32", "64"], "init.from": ["previous"]}
    with pytest.raises(BnnlabError, match="KEY=V1,V2"):
        parse_vary(["optim.lr"])
    with pytest.raises(BnnlabError, match="Did you mean 'optim.lr'"):
        check_key("optim.lrr")
    with pytest.raises(BnnlabError, match="unknown config key 'model.nmae'"):
        check_key("model.nmae")
    with pytest.raises(BnnlabError, match="already given"):
        build_axes({"optimizers": "adam,bop"}, ["optim.name=sgd"])
    with pytest.raises(BnnlabError, match="given twice"):
        build_axes({"optimizers": "adam,adam"})


def test_variant_configs_validate_and_skip_helper_steps():
    (cfg,) = variant_steps([{}], {"optim.name": "bop", "optim.lr": "1e-2"}, seed=2)
    assert cfg.optim.name == "bop" and cfg.optim.lr == 0.01 and cfg.seed == 2
    with pytest.raises(BnnlabError, match="field 'optim.name'"):
        variant_steps([{}], {"optim.name": "lion"}, seed=0)
    # kd without a teacher fails validation unless a helper spec is filled in
    with pytest.raises(BnnlabError, match="teacher"):
        variant_steps([{}], {"loss.name": "kd"}, seed=0)
    (cfg,) = variant_steps([{}], {"loss.name": "kd"}, 0, {"teacher": {"model": "mlp", "checkpoint": "x.ckpt"}})
    assert cfg.loss.teacher.model == "mlp"
    steps = [{"name": "teacher", "model": {"name": "mlp"}},
             {"name": "student", "loss": {"name": "kd", "teacher": {"model": "mlp", "checkpoint": "step:teacher"}}}]
    assert helper_steps(steps) == {"teacher"}
    t, s = variant_steps(steps, {"optim.name": "bop"}, seed=1)
    assert t.optim.name == "adam" and s.optim.name == "bop" and t.seed == s.seed == 1
    # multi-step rows: the last step by default, "all" skips helper steps, names are checked
    two = [{"name": "pretrain"}, {"name": "train", "init": {"from": "previous"}}]
    assert target_steps(two) == {"train"} and target_steps(two, "all") == {"pretrain", "train"}
    assert target_steps(steps, "all") == {"student"}
    p, t = variant_steps(two, {"model.activation": "ste"}, 0)
    assert p.model.activation is None and t.model.activation == "ste"
    with pytest.raises(BnnlabError, match="Did you mean 'train'"):
        target_steps(two, "trian")


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core CPU run far faster on one intra-op thread."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rec(variant, seed, final, hist, flip=None):
    return {"variant": variant, "seed": seed, "final_top1": final, "best_top1": max(y for _, y in hist),
            "history": {"val/top1": hist}, "epochs": float(len(hist)), "epoch_s": 0.5, "flip_ratio": flip}


def test_summarize_mean_std_and_epochs_to_target():
    runs = [_rec("b", 0, 0.90, [(1, 0.5), (2, 0.9)], 1e-3), _rec("b", 1, 0.80, [(1, 0.5), (2, 0.8)], 3e-3),
            _rec("a", 0, 0.95, [(1, 0.92), (2, 0.95)]), _rec("a", 1, 0.97, [(1, 0.85), (2, 0.97)])]
    df = summarize(runs, target=0.9, order=["a", "b"])
    assert list(df["variant"]) == ["a", "b"]
    a, b = df.iloc[0], df.iloc[1]
    assert a["final_top1_mean"] == pytest.approx(0.96) and a["final_top1_std"] == pytest.approx(math.sqrt(2e-4))
    assert a["epochs_to_target"] == 1.5 and a["reached"] == 2
    assert b["epochs_to_target"] == 2.0 and b["reached"] == 1
    assert math.isnan(a["flip_ratio"]) and b["flip_ratio"] == pytest.approx(2e-3)
    md = format_table(df, target=0.9)
    assert "96.00 ± 1.41" in md and "2.0 (1/2)" in md and "2.00e-03" in md
    assert epochs_to_target([(1, 0.1)], 0.9) is None


def test_unknown_vary_key_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("BNNLAB_HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["compare", "--vary", "optim.lrr=1,2"])
    assert res.exit_code == 2
    assert res.output.startswith("error:") and res.output.count("\n") == 1
    assert "Did you mean 'optim.lr'" in res.output
    res = CliRunner().invoke(app, ["compare", "--vary", "optim.lr=0.1,-1"])
    assert res.exit_code == 2 and "optim.lr" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()  # nothing reached the store


def test_compare_end_to_end(tmp_path, monkeypatch, one_thread):
    from mlflow import MlflowClient

    monkeypatch.setenv("BNNLAB_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = CliRunner().invoke(app, [
        "compare", "--optimizers", "adam,bop", "--epochs", "2", "--data", "synthetic", "--tracking-uri", uri,
        "--set", "data.train_limit=96", "--set", "data.val_limit=64", "--set", "data.image_size=8",
        "--set", "data.options={num_classes: 4, in_channels: 1}", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert [v["variant"] for v in out["variants"]] == ["optim.name=adam", "optim.name=bop"]
    assert {"final_top1_mean", "final_top1_std", "best_top1_mean", "epochs_to_target", "epoch_s",
            "flip_ratio"} <= set(out["variants"][0])
    assert out["variants"][0]["flip_ratio"] is None and out["variants"][1]["flip_ratio"] is not None
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("compare")
    runs = c.search_runs([exp.experiment_id])
    inv = [r for r in runs if r.data.tags.get("bnnlab.level") == "invocation"]
    assert len(inv) == 1 and inv[0].info.status == "FINISHED"
    t = inv[0].data.tags
    assert t["bnnlab.command"] == "compare" and t["bnnlab.axes"] == "optim.name=adam,bop"
    assert t["bnnlab.argv"].startswith("bnnlab compare --optimizers adam,bop") or "compare" in t["bnnlab.argv"]
    rows = [r for r in runs if r.data.tags.get("bnnlab.level") == "row"]
    assert sorted(r.data.tags["bnnlab.variant"] for r in rows) == ["optim.name=adam", "optim.name=bop"]
    assert all(r.data.tags["mlflow.parentRunId"] == inv[0].info.run_id for r in rows)
    assert all(r.data.tags["bnnlab.seed"] == "0" and r.info.status == "FINISHED" for r in rows)
    # the report renders the comparison from the store alone
    res = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--out", str(tmp_path / "results")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "results" / "compare-optim-name.md").read_text()
    assert "optim.name=bop" in md and "Bop flip ratio" in md


@pytest.mark.slow
def test_compare_kd_trains_a_teacher(tmp_path, monkeypatch, one_thread):
    from mlflow import MlflowClient

    monkeypatch.setenv("BNNLAB_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = CliRunner().invoke(app, [
        "compare", "--losses", "ce,kd", "--augment", "none,attentive", "--epochs", "1", "--data", "synthetic",
        "--tracking-uri", uri, "--set", "data.train_limit=64", "--set", "data.val_limit=32",
        "--set", "data.image_size=8", "--set", "data.options={num_classes: 4, in_channels: 1}", "--markdown"])
    assert res.exit_code == 0, res.output
    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("compare").experiment_id])
    helpers = sorted(r.data.tags["bnnlab.role"] for r in runs if r.data.tags.get("bnnlab.level") == "helper")
    assert helpers == ["extractor", "teacher"]  # MLP twin for KD, a real CNN for Attentive CutMix
    assert len([r for r in runs if r.data.tags.get("bnnlab.level") == "row"]) == 4
