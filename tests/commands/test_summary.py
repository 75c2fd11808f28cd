import json

from bnnlab.models import list_models


def test_summary_json_matches_paper_ops(cli):
    res = cli(["summary", "bireal18", "--json"])
    assert res.exit_code == 0, res.output
    ops = json.loads(res.output)["totals"]["ops"]
    assert abs(ops - 1.63e8) / 1.63e8 < 0.02


def test_summary_without_model_lists_every_model(cli):
    res = cli(["summary", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["model"] for r in json.loads(res.output)] == list_models()


def test_summary_markdown_and_proxy(cli):
    res = cli(["summary", "bireal18", "--proxy", "--markdown", "--no-layers"])
    assert res.exit_code == 0 and res.output.startswith("**bireal18**")
    assert "32x32" in res.output


def test_summary_unknown_model(cli):
    res = cli(["summary", "reactnet-b"])
    assert res.exit_code == 2 and "reactnet-a" in res.output
