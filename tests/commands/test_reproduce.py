"""`bnnlab reproduce` and `bnnlab recipes` through the CLI, with a temporary MLflow store
(BNNLAB_HOME is a tmp dir, see tests/conftest.py)."""

from __future__ import annotations

import inspect
import json

import pytest
from mlflow import MlflowClient

from bnnlab.recipes import recipe_names
from bnnlab.tracking import home, resolve_tracking_uri

# fast suite: per recipe the rows that exercise every kind of step (multi-step transfer,
# teachers/extractors from an earlier step, Bop, KD, CMIM, Attentive CutMix); the slow
# variant below runs every row of every recipe.
SMOKE_ROWS = {
    "quickstart": None,  # all rows
    "bireal-imagenet": "two-step",
    "bop-cifar10": "bop",
    "bop-imagenet": "xnornet",
    "reactnet-imagenet": "reactnet-a",
    "attentive-cutmix-cifar10": "bireal20-attentive",
    "attentive-cutmix-cifar100": "resnet18-attentive",
    "cmim-cifar100": "cmim",
    "ste-vs-approx": "approx-detach",
}


def _json(res) -> dict:
    out = res.stdout
    return json.loads(out[out.index("{"):])


def _runs(experiment: str):
    client = MlflowClient(resolve_tracking_uri())
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_every_shipped_recipe_has_a_smoke_test():
    assert set(recipe_names()) <= set(SMOKE_ROWS)


@pytest.mark.parametrize("name", sorted(SMOKE_ROWS))
def test_recipe_runs_at_smoke_scale(cli, name):
    args = ["reproduce", name, "--scale", "smoke", "--json"]
    if SMOKE_ROWS[name]:
        args += ["--rows", SMOKE_ROWS[name]]
    res = cli(args)
    assert res.exit_code == 0, res.output
    out = _json(res)
    assert out["recipe"] == name and out["scale"] == "smoke" and out["proxy"] is True
    for row in out["rows"]:
        assert row["top1_mean"] is not None and 0 <= row["top1_mean"] <= 100, row
        assert not row["failed"]
    runs = _runs(name)
    inv = [r for r in runs if r.data.tags.get("bnnlab.level") == "invocation"]
    assert len(inv) == 1 and inv[0].info.status == "FINISHED"
    rows = [r for r in runs if r.data.tags.get("bnnlab.level") == "row"]
    assert {r.data.tags["bnnlab.row"] for r in rows} == {r["row"] for r in out["rows"]}
    for r in rows:
        assert r.data.tags["mlflow.parentRunId"] == inv[0].info.run_id
        assert r.data.tags["bnnlab.recipe"] == name and r.data.tags["bnnlab.scale"] == "smoke"
        assert r.info.status == "FINISHED" and "final/val_top1" in r.data.metrics


def test_invocation_and_row_tags_carry_paper_numbers(cli):
    res = cli(["reproduce", "bop-cifar10", "--scale", "smoke", "--rows", "bop,adam-latent", "--seeds", "2"])
    assert res.exit_code == 0, res.output
    assert "[4/4] row adam-latent seed 1" in res.output
    assert "CPU PROXY" in res.output and "not comparable" in res.output
    runs = _runs("bop-cifar10")
    (inv,) = [r for r in runs if r.data.tags.get("bnnlab.level") == "invocation"]
    t = inv.data.tags
    assert (t["bnnlab.command"], t["bnnlab.recipe"], t["bnnlab.scale"]) == ("reproduce", "bop-cifar10", "smoke")
    assert "bnnlab reproduce bop-cifar10" in t["bnnlab.argv"] and "--seeds" in t["bnnlab.argv"]
    rows = {(r.data.tags["bnnlab.row"], r.data.tags["bnnlab.seed"]): r for r in runs
            if r.data.tags.get("bnnlab.level") == "row"}
    assert set(rows) == {("bop", "0"), ("bop", "1"), ("adam-latent", "0"), ("adam-latent", "1")}
    bop = rows[("bop", "0")].data.tags
    assert bop["bnnlab.paper.top1"] == "91.3" and "1906.02107" in bop["bnnlab.paper.source"]
    assert bop["bnnlab.row_label"].startswith("BinaryNet + Bop")
    assert "bnnlab.paper.top1" not in rows[("adam-latent", "0")].data.tags  # null stays absent


def test_dry_run_prints_paper_plan_and_writes_nothing(cli):
    res = cli(["reproduce", "bireal-imagenet", "--dry-run", "--scale", "paper"])
    assert res.exit_code == 0, res.output
    assert "data=imagenet" in res.output and "epochs=20" in res.output and "optim=sgd" in res.output
    assert "lr=0.01" in res.output and "[10.0, 15.0]x0.1" in res.output and "56.4" in res.output
    res = cli(["reproduce", "bireal-imagenet", "--dry-run", "--scale", "paper", "--json"])
    plan = _json(res)
    assert len(plan["runs"]) == 11 and plan["proxy"] is False
    train = plan["runs"][0]["steps"][1]["config"]
    assert train["optim"]["name"] == "sgd" and train["trainer"]["epochs"] == 20
    assert train["data"]["batch_size"] == 128 and train["optim"]["momentum"] == 0.9
    assert not (home() / "mlflow.db").exists()


def test_paper_scale_without_imagenet_stops_before_training(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli(["reproduce", "bireal-imagenet", "--scale", "paper", "--data-dir", empty])
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error:") and "ImageNet" in line and str(empty) in line
    assert len(res.output.strip().splitlines()) == 1
    assert _runs("bireal-imagenet") == []


def test_missing_teacher_checkpoint_is_one_line(cli, tmp_path):
    # ImageNet present (tiny fake folders) but no teacher file -> clear message, nothing runs
    for split in ("train", "val"):
        (tmp_path / "in" / split / "n01").mkdir(parents=True)
    res = cli(["reproduce", "reactnet-imagenet", "--scale", "paper", "--rows", "reactnet-a",
               "--data-dir", tmp_path / "in"])
    assert res.exit_code == 2, res.output
    assert "resnet34-teacher.pt" in res.output and "--set loss.teacher.checkpoint=PATH" in res.output
    assert _runs("reactnet-imagenet") == []


def test_unknown_rows_recipe_and_scale(cli):
    res = cli(["reproduce", "quickstart", "--rows", "real,bopp"])
    assert res.exit_code == 2 and "unknown row" in res.output and "Did you mean 'bop'" in res.output
    res = cli(["reproduce", "bireal-imagenett"])
    assert res.exit_code == 2 and "Did you mean 'bireal-imagenet'" in res.output
    res = cli(["reproduce", "quickstart", "--scale", "huge"])
    assert res.exit_code == 2 and "unknown scale" in res.output
    res = cli(["reproduce", "quickstart", "--set", "optim.lr=-1", "--dry-run"])
    assert res.exit_code == 2 and "optim.lr" in res.output


USER_RECIPE = """\
name: my-table
title: my own table
rows:
  - {id: a, label: binary MLP, paper: {top1: 12.5, source: my notes}}
  - {id: b, label: real MLP, set: {model.name: mlp}}
base: {model: {options: {hidden: 16}}}
scales:
  paper: {}
  mini: {}
  smoke: {set: {data: {name: synthetic, image_size: 8, train_limit: 32, val_limit: 16, batch_size: 16,
                       options: {in_channels: 1}}, trainer.epochs: 1}}
"""


def test_user_recipe_file(cli, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(USER_RECIPE)
    res = cli(["reproduce", path, "--scale", "smoke", "--rows", "a", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = _json(res)["rows"]
    assert row["row"] == "a" and row["paper_top1"] == 12.5
    (r,) = [r for r in _runs("my-table") if r.data.tags.get("bnnlab.level") == "row"]
    assert r.data.tags["bnnlab.paper.top1"] == "12.5"
    bad = tmp_path / "bad.yaml"
    bad.write_text(USER_RECIPE.replace("model.name: mlp", "model.name: mpl"))
    res = cli(["reproduce", bad, "--dry-run"])
    assert res.exit_code == 2 and str(bad) in res.output and "model.name" in res.output
    assert "Did you mean 'mlp'" in res.output


def test_resume_reopens_the_invocation_and_keeps_finished_rows(cli):
    from bnnlab.runner import run_steps

    if "resume" not in inspect.signature(run_steps).parameters:
        res = cli(["reproduce", "quickstart", "--scale", "smoke", "--resume"])
        assert res.exit_code == 2 and "--resume is not supported yet" in res.output
        return
    args = ["reproduce", "quickstart", "--scale", "smoke", "--rows", "real,bop"]
    res = cli([*args, "--json"])
    assert res.exit_code == 0, res.output
    first = _json(res)
    inv = first["invocation_run_id"]
    client = MlflowClient(resolve_tracking_uri())
    client.update_run(inv, status="KILLED")  # as if the invocation had been interrupted
    res = cli([*args, "--resume", "--json"])
    assert res.exit_code == 0, res.output
    again = _json(res)
    assert again["invocation_run_id"] == inv and client.get_run(inv).info.status == "FINISHED"
    assert [r["run_ids"] for r in again["rows"]] == [r["run_ids"] for r in first["rows"]]
    assert "already finished" in res.output
    rows = [r for r in _runs("quickstart") if r.data.tags.get("bnnlab.level") == "row"]
    assert len(rows) == 2


def test_interrupt_marks_invocation_killed_and_failure_continues(cli, monkeypatch):
    import bnnlab.runner as runner

    real = runner.run_steps
    calls = []

    def fake(steps, **kw):
        calls.append(kw["run_name"])
        if kw["run_name"].startswith("ste"):
            raise RuntimeError("boom")  # a failed row: the others still run
        if kw["run_name"].startswith("bop"):
            raise runner.RunInterrupted("training interrupted (SIGINT)")
        return real(steps, **kw)

    monkeypatch.setattr(runner, "run_steps", fake)
    res = cli(["reproduce", "quickstart", "--scale", "smoke", "--rows", "ste,real,bop,approx"])
    assert res.exit_code == 130, res.output
    assert calls == ["ste-s0", "real-s0", "bop-s0"]  # stopped at the interrupt
    assert "row ste seed 0 FAILED: RuntimeError: boom" in res.output
    runs = _runs("quickstart")
    (inv,) = [r for r in runs if r.data.tags.get("bnnlab.level") == "invocation"]
    assert inv.info.status == "KILLED"


def test_recipes_list_and_show(cli):
    res = cli(["recipes"])
    assert res.exit_code == 0 and "bireal-imagenet" in res.output
    res = cli(["recipes", "list", "--json"])
    data = json.loads(res.stdout)
    assert {d["name"] for d in data} == set(recipe_names())
    res = cli(["recipes", "show", "reactnet-imagenet"])
    assert res.exit_code == 0
    assert "69.4" in res.output and "69.5" in res.output and "README" in res.output
    res = cli(["recipes", "show", "cmim-cifar100", "--json"])
    d = json.loads(res.stdout)
    assert [r["paper"]["top1"] for r in d["rows"]] == [65.4, 71.2]
    res = cli(["recipes", "show", "nope"])
    assert res.exit_code == 2 and "unknown recipe" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE_ROWS))
def test_recipe_all_rows_at_smoke_scale(cli, name):
    res = cli(["reproduce", name, "--scale", "smoke", "--json"])
    assert res.exit_code == 0, res.output
    assert all(r["top1_mean"] is not None for r in _json(res)["rows"])
