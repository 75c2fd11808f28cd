"""``bnnlab report`` on a hand-made MLflow store: values, ordering, disclaimer, PNGs, determinism."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bnnlab.cli import app

T0 = 1_780_000_000_000  # ms; 2026-05-28 20:26:40 UTC
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metric_history(client, run_id: str, key: str, values: list[float]) -> None:
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(key, v, T0 + i, i) for i, v in enumerate(values)])


def _run(client, exp_id: str, name: str, tags: dict, start: int, status: str = "FINISHED", parent: str | None = None,
         metrics: dict | None = None, history: dict | None = None, params: dict | None = None) -> str:
    from mlflow.entities import Metric, Param

    tags = {k: str(v) for k, v in tags.items()}
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, start_time=start, tags=tags, run_name=name)
    rid = run.info.run_id
    if metrics:
        client.log_batch(rid, metrics=[Metric(k, v, T0, 0) for k, v in metrics.items()])
    if params:
        client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
    for key, values in (history or {}).items():
        _metric_history(client, rid, key, values)
    client.set_terminated(rid, status, end_time=start + 1000)
    return rid


BASE = {"bnnlab.version": "0.1.0", "git.commit": "0123456789abcdef0123", "git.dirty": "false"}
ENV = {"env.torch": "2.14.1", "env.lightning": "2.6.6", "env.mlflow": "3.17.2", "env.device": "cpu (test)"}


def _row(client, exp, inv, row, label, seed, final, start, paper=None, top5=None, flips=None, steps=1):
    tags = {**BASE, "bnnlab.command": "reproduce", "bnnlab.recipe": "demo", "bnnlab.row": row,
            "bnnlab.row_label": label, "bnnlab.scale": "mini", "bnnlab.seed": seed, "bnnlab.level": "row"}
    tags.update({f"bnnlab.paper.{k}": v for k, v in (paper or {}).items()})
    metrics = {"final/val_top1": final, "best/val_top1": final + 0.01, "epochs": 3.0 * steps,
               "time/total_s": 10.0 + seed}
    if top5 is not None:
        metrics["final/val_top5"] = top5
    hist = {"val/top1": [final - 0.2, final - 0.1, final], "train/loss": [1.0, 0.5, 0.25 + seed / 100],
            "time/epoch_s": [1.0, 1.0, 1.0]}
    if flips:
        hist["bop/flip_ratio"] = flips
    params = {"data.name": "digits", "trainer.accelerator": "cpu"}
    if steps == 1:
        return _run(client, exp, f"{row}-s{seed}", {**tags, "bnnlab.kind": "step"}, start, parent=inv,
                    metrics=metrics, history=hist, params=params)
    proc = _run(client, exp, f"{row}-s{seed}", {**tags, "bnnlab.kind": "procedure"}, start, parent=inv,
                metrics=metrics)
    for i in range(steps):
        _run(client, exp, f"{row}-s{seed}/step{i}", {**tags, "bnnlab.level": "step", "bnnlab.kind": "step",
                                                    "bnnlab.step_index": i}, start + i,
             parent=proc, history=hist, params=params)
    return proc


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    from mlflow import MlflowClient

    d = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    c = MlflowClient(uri)
    exp = c.create_experiment("demo", artifact_location=(d / "artifacts").as_uri())
    inv_tags = {**BASE, **ENV, "bnnlab.level": "invocation", "bnnlab.command": "reproduce", "bnnlab.recipe": "demo",
                "bnnlab.scale": "mini"}
    # an older finished invocation (ignored: not the latest)
    old = _run(c, exp, "demo-mini", {**inv_tags, "bnnlab.argv": "bnnlab reproduce demo (old)"}, T0 - 10_000_000)
    _row(c, exp, old, "base", "Baseline", 0, 0.11, T0 - 9_000_000, paper={"top1": 60.0})
    # the latest finished invocation
    inv = _run(c, exp, "demo-mini", {**inv_tags, "bnnlab.argv": "bnnlab reproduce demo --seeds 2",
                                     "bnnlab.rows": "base,better,nopaper"}, T0)
    # rows started out of recipe order on purpose
    _row(c, exp, inv, "better", "Better | method", 0, 0.60, T0 + 10, paper={"top1": 70.5, "source": "Table 2"},
         flips=[1e-3, 5e-4, 2e-4], steps=2)
    _row(c, exp, inv, "better", "Better | method", 1, 0.62, T0 + 11, paper={"top1": 70.5, "source": "Table 2"},
         flips=[2e-3, 6e-4, 1e-4], steps=2)
    _row(c, exp, inv, "base", "Baseline", 0, 0.62, T0 + 20, paper={"top1": 60.0, "top5": 80.0, "source": "Table 1"},
         top5=0.80)
    _row(c, exp, inv, "base", "Baseline", 1, 0.64, T0 + 21, paper={"top1": 60.0, "top5": 80.0, "source": "Table 1"},
         top5=0.82)
    _row(c, exp, inv, "nopaper", "No paper number", 0, 0.50, T0 + 30)
    # a newer invocation that failed (ignored)
    bad = _run(c, exp, "demo-mini", {**inv_tags, "bnnlab.argv": "bnnlab reproduce demo (failed)"}, T0 + 5_000_000,
               status="FAILED")
    _row(c, exp, bad, "base", "Baseline", 0, 0.99, T0 + 5_000_010, paper={"top1": 60.0})
    # the same recipe at smoke scale: its own file
    sm = _run(c, exp, "demo-smoke", {**inv_tags, "bnnlab.scale": "smoke", "bnnlab.argv": "bnnlab reproduce demo "
                                     "--scale smoke"}, T0 + 100)
    _row(c, exp, sm, "base", "Baseline", 0, 0.10, T0 + 110)
    # a recipe whose only invocation failed (one row failed): reported from its finished rows, flagged
    fexp = c.create_experiment("flaky", artifact_location=(d / "artifacts").as_uri())
    finv = _run(c, fexp, "flaky-mini", {**inv_tags, "bnnlab.recipe": "flaky", "bnnlab.rows": "ok,broken"},
                T0 + 300, status="FAILED")
    for row, status in (("ok", "FINISHED"), ("broken", "FAILED")):
        _run(c, fexp, f"{row}-s0", {**BASE, "bnnlab.level": "row", "bnnlab.kind": "step", "bnnlab.recipe": "flaky",
                                    "bnnlab.row": row, "bnnlab.row_label": row, "bnnlab.scale": "mini",
                                    "bnnlab.seed": 0}, T0 + 310 + len(row), status=status, parent=finv,
             metrics={"final/val_top1": 0.5, "epochs": 1.0, "time/total_s": 1.0} if status == "FINISHED" else None)
    # a comparison
    cexp = c.create_experiment("compare", artifact_location=(d / "artifacts").as_uri())
    ctags = {**BASE, **ENV, "bnnlab.level": "invocation", "bnnlab.command": "compare",
             "bnnlab.axes": "optim.name=adam,bop", "bnnlab.variants": '["optim.name=adam", "optim.name=bop"]',
             "bnnlab.target": "0.5", "bnnlab.argv": "bnnlab compare --optimizers adam,bop"}
    cinv = _run(c, cexp, "compare optim.name", ctags, T0 + 200)
    for i, (variant, final) in enumerate([("optim.name=bop", 0.70), ("optim.name=adam", 0.80)]):
        for seed in (0, 1):
            tags = {**BASE, "bnnlab.level": "row", "bnnlab.kind": "step", "bnnlab.command": "compare",
                    "bnnlab.variant": variant, "bnnlab.seed": seed}
            hist = {"val/top1": [0.3, 0.55 + seed * 0.1, final], "train/loss": [1.0, 0.6, 0.3]}
            m = {"final/val_top1": final + seed * 0.02, "best/val_top1": final + seed * 0.02, "epochs": 3.0,
                 "time/total_s": 3.0}
            if variant.endswith("bop"):
                hist["bop/flip_ratio"] = [1e-3, 1e-4, 1e-5]
            _run(c, cexp, f"{variant} s{seed}", tags, T0 + 210 + 10 * i + seed, parent=cinv, metrics=m, history=hist,
                 params={"data.name": "digits"})
    return uri


def _report(store: str, out: Path, *args: str):
    res = CliRunner().invoke(app, ["report", "--tracking-uri", store, "--out", str(out), *args])
    return res


def _table_rows(md: str) -> list[list[str]]:
    """Rows (header first) of the table under '## Results'."""
    md = md.split("## Results", 1)[1]
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    rows = []
    for ln in lines:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        if cells and not set(cells[0]) <= set(":-"):
            rows.append(cells)
    return rows


def test_recipe_report_values_order_and_disclaimer(store, tmp_path):
    out = tmp_path / "results"
    res = _report(store, out)
    assert res.exit_code == 0, res.output
    md = (out / "demo-mini.md").read_text()
    assert "# demo — scale `mini`" in md
    assert "not comparable to the paper's absolute numbers" in md
    assert "2026-05-28 20:26:40 UTC" in md  # the invocation's start time, the only timestamp
    assert "`bnnlab reproduce demo --seeds 2`" in md
    assert "2.14.1 / 2.6.6 / 3.17.2" in md and "`0123456789ab` (clean)" in md
    rows = _table_rows(md)
    header, body = rows[0], rows[1:]
    assert header[:4] == ["Row", "id", "Paper top-1 (%)", "Paper top-5 (%)"]
    assert [r[1] for r in body] == ["`base`", "`better`", "`nopaper`"]  # recipe order, not start order
    col = {h: i for i, h in enumerate(header)}
    base, better, nopaper = body
    assert base[col["Reproduced top-1 (%)"]] == "63.00 ± 1.41"
    assert base[col["Δ top-1"]] == "+3.00"
    assert base[col["Reproduced top-5 (%)"]] == "81.00 ± 1.41"
    assert base[col["Δ top-5"]] == "+1.00"
    assert base[col["Paper source"]] == "Table 1"
    assert base[col["Paper top-1 (%)"]] == "60.0" and better[col["Paper top-1 (%)"]] == "70.5"
    assert base[col["Seeds"]] == "2" and base[col["Epochs"]] == "3"
    assert base[col["Wall time (s/run)"]] == "10.5"
    assert better[0] == "Better \\| method"
    assert better[col["Reproduced top-1 (%)"]] == "61.00 ± 1.41"
    assert better[col["Δ top-1"]] == "-9.50"
    assert better[col["Epochs"]] == "6"  # two steps of 3 epochs
    assert nopaper[col["Paper top-1 (%)"]] == "-" and nopaper[col["Δ top-1"]] == "-"
    assert nopaper[col["Reproduced top-1 (%)"]] == "50.00"  # one seed: no ±
    assert "11.00" not in md and "99.00" not in md  # older / failed invocations are not used
    # smoke scale gets its own file with its own disclaimer
    smoke = (out / "demo-smoke.md").read_text()
    assert "scale `smoke`" in smoke and "not comparable" in smoke


def test_pngs_are_valid_and_linked(store, tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "results"
    assert _report(store, out, "--recipe", "demo", "--scale", "mini").exit_code == 0
    md = (out / "demo-mini.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(links) == {"demo-mini-val-top1.png", "demo-mini-train-loss.png", "demo-mini-bop-flip-ratio.png"}
    for name in links:
        p = out / name
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert not (out / "demo-smoke.md").exists()  # --scale filter
    assert not list(out.glob("compare-*"))  # --recipe filter leaves comparisons out


def test_rerun_is_byte_identical(store, tmp_path):
    out = tmp_path / "results"
    assert _report(store, out).exit_code == 0
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert _report(store, out).exit_code == 0
    second = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert first.keys() == second.keys()
    assert any(n.endswith(".png") for n in first)
    for name in first:
        assert first[name] == second[name], name


def test_compare_section_and_index(store, tmp_path):
    out = tmp_path / "results"
    assert _report(store, out).exit_code == 0
    md = (out / "compare-optim-name.md").read_text()
    rows = _table_rows(md)
    header, body = rows[0], rows[1:]
    assert [r[0] for r in body] == ["optim.name=adam", "optim.name=bop"]  # invocation's variant order
    col = {h: i for i, h in enumerate(header)}
    assert body[0][col["final top-1 (%)"]] == "81.00 ± 1.41"
    assert body[0][col["epochs to 50%"]] == "2.0"
    assert body[0][col["Bop flip ratio"]] == "-"
    assert body[1][col["Bop flip ratio"]] == "3.70e-04"
    assert "`bnnlab compare --optimizers adam,bop`" in md
    index = (out / "index.md").read_text()
    assert "(demo-mini.md)" in index and "(demo-smoke.md)" in index and "(compare-optim-name.md)" in index
    assert _report(store, out, "--no-compare").exit_code == 0


def test_failed_invocation_is_flagged(store, tmp_path):
    out = tmp_path / "results"
    assert _report(store, out, "--recipe", "flaky").exit_code == 0
    md = (out / "flaky-mini.md").read_text()
    assert "this invocation ended FAILED" in md
    body = _table_rows(md)[1:]
    assert [r[1] for r in body] == ["`ok`", "`broken`"]
    assert "50.00" in body[0] and "failed (1 run)" in body[1]


def test_report_errors_are_one_line(store, tmp_path):
    res = _report(store, tmp_path / "r", "--recipe", "dem")
    assert res.exit_code == 2 and "Did you mean 'demo'?" in res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error:")
    res = _report(store, tmp_path / "r", "--scale", "huge")
    assert res.exit_code == 2 and "unknown scale 'huge'" in res.output
