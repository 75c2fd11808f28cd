"""bnnlab against a real `mlflow server` over HTTP (artifacts proxied by the server)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FAST, run_cli, series


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_train_and_report_through_an_http_server(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--serve-artifacts", "--artifacts-destination", str(tmp_path / "server-artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.time() < deadline, "mlflow server did not come up"
            time.sleep(1)
        res = run_cli(["train", "--epochs", "2", *FAST, "--tracking-uri", uri, "--experiment", "shared"],
                      env={"BNNLAB_HOME": str(tmp_path / "client-home")})
        assert res.returncode == 0, res.stderr[-3000:]
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("shared")
        (run,) = client.search_runs([exp.experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.params["trainer.epochs"] == "2" and run.data.params["model.name"] == "binary-mlp"
        assert [s for s, _ in series(client, run.info.run_id, "val/top1")] == [0, 1]
        assert "final/val_top1" in run.data.metrics
        ckpts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
        assert ckpts == ["checkpoints/last.ckpt"]
        stored = list((tmp_path / "server-artifacts").rglob("last.ckpt"))
        assert len(stored) == 1 and stored[0].stat().st_size > 0  # uploaded through the server
        env = {"BNNLAB_HOME": str(tmp_path / "client-home")}
        rec = run_cli(["reproduce", "quickstart", "--scale", "smoke", "--tracking-uri", uri], env=env, timeout=600)
        assert rec.returncode == 0, rec.stderr[-3000:]
        rep = run_cli(["report", "--tracking-uri", uri, "--out", tmp_path / "report"], env=env)
        assert rep.returncode == 0, rep.stderr[-3000:]
        assert list((tmp_path / "report").rglob("*.md"))
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
