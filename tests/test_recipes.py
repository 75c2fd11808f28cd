"""Recipe schema, validation and expansion (no training here; see tests/commands/test_reproduce.py)."""

from __future__ import annotations

import textwrap

import pytest

from bnnlab.errors import BnnlabError, UnknownNameError
from bnnlab.recipes import SCALES, expand_sets, list_recipes, load_recipe, recipe_names

EXPECTED = {"quickstart", "bireal-imagenet", "bop-cifar10", "bop-imagenet", "reactnet-imagenet",
            "attentive-cutmix-cifar10", "attentive-cutmix-cifar100", "cmim-cifar100", "ste-vs-approx"}

GOOD = """\
name: tiny
title: a tiny recipe
table: none
base:
  data: {name: digits, batch_size: 64}
  model: {name: binary-mlp, options: {hidden: 16}}
  trainer: {epochs: 3}
rows:
  - id: ste
    label: STE
    set: {model.activation: ste}
    paper: {top1: 50.0, source: "made up for the test"}
  - id: approx
    label: ApproxSign
    set: {model.activation: approx}
scales:
  paper: {}
  mini: {seeds: 2}
  smoke: {set: {data.name: synthetic, data.image_size: 8, data.options: {in_channels: 1}, trainer.epochs: 1}}
"""


def _write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture(scope="module")
def recipes():
    return {r.name: r for r in list_recipes()}


def test_all_expected_recipes_ship(recipes):
    assert EXPECTED <= set(recipe_names())
    assert EXPECTED <= set(recipes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("scale", SCALES)
def test_every_recipe_plans_at_every_scale(recipes, name, scale):
    r = recipes[name]
    plan = r.plan(scale)
    assert len(plan) == len(r.rows) * r.default_seeds(scale)
    for run in plan:
        assert run.steps, run.row_id
        for cfg in run.steps:
            assert cfg.seed == run.seed
            if scale == "smoke":
                assert cfg.data.name == "synthetic" and cfg.trainer.epochs == 1
            if scale == "mini":
                assert cfg.data.name == "digits" and cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_numbers_have_sources(recipes, name):
    for row in recipes[name].rows:
        if row.paper.metrics():
            assert row.paper.source


def test_paper_numbers_from_design_notes(recipes):
    def top1(recipe, row):
        return recipes[recipe].row(row).paper.values().get("top1")

    assert top1("bireal-imagenet", "bireal18") == 56.4
    assert recipes["bireal-imagenet"].row("bireal34").paper.values()["top5"] == 83.9
    assert top1("bireal-imagenet", "xnornet18") == 51.2
    assert top1("bireal-imagenet", "abl-ste") is None  # UNCONFIRMED stays null
    assert top1("bop-cifar10", "bop") == 91.3
    assert top1("bop-cifar10", "adam-latent") is None
    assert [top1("bop-imagenet", r) for r in ("alexnet", "xnornet", "bireal18")] == [41.1, 45.9, 56.6]
    assert top1("reactnet-imagenet", "reactnet-a") == 69.4
    assert recipes["reactnet-imagenet"].row("reactnet-a").paper.values()["top1_readme"] == 69.5
    assert recipes["reactnet-imagenet"].row("reactnet18").paper.values()["top1_readme"] == 65.9
    assert [top1("cmim-cifar100", r) for r in ("baseline", "cmim")] == [65.4, 71.2]
    for name in ("attentive-cutmix-cifar10", "attentive-cutmix-cifar100"):
        assert all(v is None for r in recipes[name].rows for v in r.paper.values().values())


def test_bireal_paper_scale_is_the_caffe_recipe(recipes):
    (run,) = recipes["bireal-imagenet"].plan("paper", rows=["bireal18"])
    pre, train = run.steps
    assert (pre.model.activation, pre.model.weight) == ("clip", "real")
    o = train.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.01, 0.9, 0.0)
    assert o.schedule.milestones == [10, 15] and o.schedule.factor == 0.1
    assert train.trainer.epochs == 20 and train.data.batch_size == 128 and train.data.name == "imagenet"
    assert train.init.from_ == "previous"


def test_mini_proxies_keep_the_row_switches(recipes):
    r = recipes["bireal-imagenet"]
    by_row = {p.row_id: p.steps for p in r.plan("mini")}
    assert by_row["abl-ste"][-1].model.activation == "ste"
    assert by_row["abl-weight-sign"][-1].model.weight == "sign"
    assert by_row["abl-weight-official"][-1].model.weight == "scaled-official"
    assert by_row["abl-init-relu"][0].model.activation == "relu"
    assert [s.name for s in by_row["abl-init-none"]] == ["train"]
    assert by_row["abl-shortcut-block"][-1].model.options["shortcut"] == "block"
    bn = by_row["two-step"][-1]
    assert (bn.name, bn.model.weight, bn.train_only, bn.init.snap_weights, bn.trainer.epochs) == (
        "bn", "sign", "bn", True, 1)
    rn = {p.row_id: p.steps for p in recipes["reactnet-imagenet"].plan("mini")}
    s1, s2 = rn["reactnet-a"][1:]
    assert (s1.model.weight, s1.optim.weight_decay, s1.optim.weight_decay_on) == ("real", 1e-5, "conv")
    assert (s2.model.weight, s2.optim.weight_decay, s2.init.from_) == ("sign", 0.0, "previous")
    assert s1.loss.teacher.checkpoint == "step:teacher"
    assert rn["abl-baseline"][0].loss.name == "ce" and rn["abl-baseline"][0].loss.teacher is None


def test_reactnet_paper_teacher_comes_from_data_dir(recipes):
    plan = recipes["reactnet-imagenet"].plan("paper", rows=["reactnet-a"], overrides={"data.data_dir": "/d/in"})
    assert [s.name for s in plan[0].steps] == ["step1", "step2"]
    assert plan[0].steps[0].loss.teacher.checkpoint == "/d/in/resnet34-teacher.pt"


def test_plan_rows_seeds_overrides(recipes):
    r = recipes["quickstart"]
    plan = r.plan("mini", rows=["bop", "ste"], seeds=3, overrides={"optim.lr": "0.5"})
    assert [(p.row_id, p.seed) for p in plan] == [("bop", 0), ("bop", 1), ("bop", 2), ("ste", 0), ("ste", 1),
                                                  ("ste", 2)]
    assert all(p.steps[0].optim.lr == 0.5 for p in plan) and plan[-1].total == 6
    with pytest.raises(UnknownNameError, match="Did you mean 'bop'"):
        r.plan("mini", rows=["bpo"])
    with pytest.raises(UnknownNameError, match="scale"):
        r.plan("huge")
    with pytest.raises(BnnlabError, match="optim.lr"):
        r.plan("mini", overrides={"optim.lr": "-1"})


def test_expand_sets_merges_and_clears():
    d = {"model": {"options": {"a": 1, "b": 2}}}
    assert expand_sets(d, {"model.options": {"b": 3}}) == {"model": {"options": {"a": 1, "b": 3}}}
    assert expand_sets(d, {"model.options": {}}) == {"model": {"options": {}}}
    assert expand_sets(d, {"optim.lr": "1e-3"})["optim"]["lr"] == 0.001


def test_user_file_loads(tmp_path):
    r = load_recipe(_write(tmp_path, GOOD))
    assert r.name == "tiny" and len(r.plan("mini")) == 4
    assert r.row("ste").paper.metrics() == {"top1": 50.0}


def test_unknown_recipe_name_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'bireal-imagenet'"):
        load_recipe("bireal-imagenett")


@pytest.mark.parametrize("bad, field", [
    (GOOD.replace("title: a tiny recipe", "title: a tiny recipe\nauthor: me"), "author"),      # unknown field
    (GOOD.replace("    label: STE", "    label: STE\n    sett: {}"), "rows.0.sett"),            # unknown row field
    (GOOD.replace("trainer: {epochs: 3}", "trainer: {epochs: many}"), "trainer.epochs"),       # wrong type
    (GOOD.replace("{model.activation: ste}", "{model.activation: ste, optim.lr: -0.1}"), "optim.lr"),  # negative
    (GOOD.replace("{model.activation: approx}", "{model.name: bireal81}"), "model.name"),     # unknown model
    (GOOD.replace("{model.activation: approx}", "{model.activation: aprox}"), "model.activation"),
    (GOOD.replace("options: {hidden: 16}", "options: {hiden: 16}"), "model.options.hiden"),
    (GOOD.replace("top1: 50.0, source", "top1: fifty, source"), "rows.0.paper"),
    (GOOD.replace('top1: 50.0, source: "made up for the test"', "top1: 50.0"), "rows.0.paper"),  # no source
    (GOOD.replace("  smoke:", "  smok:"), "scales"),
    (GOOD.replace("id: approx", "id: ste"), "duplicate row"),
])
def test_bad_recipes_name_file_and_field(tmp_path, bad, field):
    path = _write(tmp_path, bad)
    with pytest.raises(BnnlabError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert str(path) in msg and field in msg and "\n" not in msg


def test_bad_row_fails_even_if_only_one_scale_is_wrong(tmp_path):
    bad = GOOD.replace("    set: {model.activation: approx}",
                       "    set: {model.activation: approx}\n    scales: {mini: {set: {data.batch_size: 0}}}")
    with pytest.raises(BnnlabError, match=r"row 'approx', scale 'mini'.*data.batch_size"):
        load_recipe(_write(tmp_path, bad))


def test_step_references_checked(tmp_path):
    bad = GOOD.replace("base:", "steps:\n  - {name: a}\n  - {name: b, init: {from: step:c}}\nbase:")
    with pytest.raises(BnnlabError, match=r"step 'b'.*init.from.*'step:c'"):
        load_recipe(_write(tmp_path, bad))


def test_malformed_yaml_gives_line(tmp_path):
    path = _write(tmp_path, GOOD.replace("  - id: approx", "  - id: [approx"))
    with pytest.raises(BnnlabError, match=r"line \d+") as info:
        load_recipe(path)
    assert str(path) in str(info.value) and "malformed YAML" in str(info.value)


def test_missing_file():
    with pytest.raises(BnnlabError, match="not found"):
        load_recipe("/nonexistent/recipe.yaml")
