"""Bad input: exit code 2, one line naming the culprit, no traceback, nothing in the store."""

import os

import pytest
import torch
from conftest import count_runs

CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]


@pytest.fixture
def files(tmp_path):
    from bnnlab.models import create_model

    (tmp_path / "bad.yaml").write_text("optim:\n  lr: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "bad.ckpt").write_bytes(b"\x00 definitely not a checkpoint")
    other = create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=17)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt" / "cifar-10-batches-py"
    corrupt.mkdir(parents=True)
    for name in CIFAR_FILES:
        (corrupt / name).write_bytes(b"garbage, not a pickle")
    (tmp_path / "plainfile").write_text("a file, not a folder")
    (tmp_path / "badrecipe.yaml").write_text("name: x\nrows: [\n")
    return tmp_path


# (id, argv after `bnnlab`, text that must name the culprit, env)
CASES = [
    ("malformed-yaml", ["train", "--config", "{tmp}/bad.yaml"], "bad.yaml", None),
    ("yaml-not-mapping", ["train", "--config", "{tmp}/list.yaml"], "expected a mapping", None),
    ("missing-config", ["train", "--config", "{tmp}/nope.yaml"], "nope.yaml", None),
    ("unknown-model", ["train", "--model", "bireal81"], "Did you mean 'bireal18'", None),
    ("unknown-optimizer", ["train", "--optimizer", "bopp"], "Did you mean 'bop'", None),
    ("unknown-activation", ["train", "--activation", "aprox"], "Did you mean 'approx'", None),
    ("unknown-weight", ["train", "--weight", "scaledd"], "Did you mean 'scaled'", None),
    ("unknown-dataset", ["train", "--data", "digitz"], "Did you mean 'digits'", None),
    ("negative-lr", ["train", "--lr", "-0.1"], "optim.lr", None),
    ("negative-tau", ["train", "--optimizer", "bop", "--tau", "-1e-6"], "optim.tau", None),
    ("gamma-above-1", ["train", "--optimizer", "bop", "--gamma", "2"], "optim.gamma", None),
    ("gamma-zero", ["train", "--optimizer", "bop", "--gamma", "0"], "optim.gamma", None),
    ("epochs-zero", ["train", "--epochs", "0"], "trainer.epochs", None),
    ("batch-size-zero", ["train", "--batch-size", "0"], "data.batch_size", None),
    ("bad-precision", ["train", "--precision", "8-bit"], "trainer.precision", None),
    ("bad-devices", ["train", "--devices", "abc"], "devices=abc", None),
    ("gpu-without-gpu", ["train", "--accelerator", "gpu"], "accelerator=gpu", None),
    ("missing-dataset", ["train", "--data", "cifar10", "--data-dir", "{tmp}/empty"], "{tmp}/empty", None),
    ("corrupt-dataset", ["train", "--data", "cifar10", "--data-dir", "{tmp}/corrupt"], "data_batch_1", None),
    ("data-dir-is-file", ["train", "--data", "cifar10", "--data-dir", "{tmp}/plainfile"], "plainfile", None),
    ("corrupt-checkpoint", ["train", "--set", "init.from={tmp}/bad.ckpt"], "bad.ckpt", None),
    ("missing-checkpoint", ["train", "--set", "init.from={tmp}/none.ckpt"], "none.ckpt", None),
    ("mismatched-checkpoint", ["train", "--set", "init.from={tmp}/other.pt"], "does not match model", None),
    ("unreachable-server", ["train", "--tracking-uri", "http://127.0.0.1:9"], "127.0.0.1:9", None),
    ("file-store-uri", ["train", "--tracking-uri", "file:./mlruns"], "file store", None),
    ("file-store-env", ["train"], "file store", {"MLFLOW_TRACKING_URI": "./mlruns"}),
    ("home-not-writable", ["train"], "plainfile", {"BNNLAB_HOME": "{tmp}/plainfile/home"}),
    ("bad-set-syntax", ["train", "--set", "optim.lr"], "KEY=VALUE", None),
    ("unknown-set-key", ["train", "--set", "optim.nosuch=1"], "optim.nosuch", None),
    ("set-type", ["train", "--set", "trainer.epochs=many"], "trainer.epochs", None),
    ("bop-on-real-model", ["train", "--weight", "real", "--optimizer", "bop"], "binary weights", None),
    ("kd-without-teacher", ["train", "--loss", "kd"], "teacher", None),
    ("resume-unknown-run", ["train", "--resume-run", "feedfacefeedface"], "feedfacefeedface", None),
    ("unknown-recipe", ["reproduce", "nosuchrecipe"], "nosuchrecipe", None),
    ("malformed-recipe", ["reproduce", "{tmp}/badrecipe.yaml"], "badrecipe.yaml", None),
    ("unknown-compare-axis", ["compare", "--vary", "nosuch=1,2"], "nosuch", None),
]


@pytest.mark.parametrize(("argv", "culprit", "env"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exit_2_one_line_no_runs(cli, files, monkeypatch, argv, culprit, env):
    fmt = lambda s: s.replace("{tmp}", str(files))  # noqa: E731
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, fmt(value))
    before = count_runs()
    argv = [fmt(a) for a in argv]
    if argv[0] == "train":
        argv += ["--epochs", "1"] if "--epochs" not in argv else []
    res = cli(argv)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    assert fmt(culprit) in errors[0], errors[0]
    assert count_runs() == before == 0


def test_unreachable_server_fails_fast(cli):
    import time

    t0 = time.perf_counter()
    res = cli(["train", "--tracking-uri", "http://127.0.0.1:9"])
    assert res.exit_code == 2 and time.perf_counter() - t0 < 10


def test_debug_shows_the_traceback(cli):
    from bnnlab.errors import BnnlabError

    with pytest.raises(BnnlabError, match="bireal18"):
        cli(["--debug", "train", "--model", "bireal81"])


def test_file_store_env_does_not_leak(monkeypatch):
    assert os.environ.get("MLFLOW_TRACKING_URI") is None
