"""Fixtures for tests against a real `bentoml serve` of bento_service/ on a free loopback port.

`inference_server_url` (session): a tiny LightGBM artifact trained on simulated data, packaged into a
private BENTOML_HOME under the pytest tmp dir (the user's store is never touched), served by
`bentoml serve service:DKTService`; yields the base URL once /readyz is 200. The web client's browser
test requests it by this name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServedModel:
    url: str
    tag: str
    artifact: Path
    data: Path
    home: Path
    log: Path


def start_bentoml(home: Path, tag: str, log: Path, *, ready_timeout: float = 120.0,
                  wait_ready: bool = True, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    full_env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
                "DKT_MODEL_TAG": tag, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    proc = subprocess.Popen([exe, "serve", "service:DKTService", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO / "bento_service", env=full_env, start_new_session=True,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    path = "/readyz" if wait_ready else "/livez"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + path, timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.25)
    stop(proc)
    raise TimeoutError(f"{url}{path} not 200 after {ready_timeout}s; see {log}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _package(artifact: Path, home: Path) -> str:
    # a subprocess, so this interpreter's BentoML default store is never bound to (or written in) ~/bentoml
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    out = subprocess.run([sys.executable, "-m", "dkt_core.cli", "package", "--model", str(artifact)],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> tuple[Path, Path]:
    from dkt_core.data.simulate import SimulationConfig, simulate, write_log
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train

    root = tmp_path_factory.mktemp("inference")
    data = root / "log.csv.gz"
    write_log(simulate(SimulationConfig(users=30, seed=5)), str(data))
    art = train(data, root / "artifact",
                TrainConfig(models=["lgbm"], model_options={"lgbm": {"num_boost_round": 15}}), progress=False)
    return art, data


@pytest.fixture(scope="session")
def inference_server(trained_tiny, tmp_path_factory):
    artifact, data = trained_tiny
    home = tmp_path_factory.mktemp("bentoml_home")
    tag = _package(artifact, home)
    log = home / "serve.log"
    proc, url = start_bentoml(home, tag, log)
    yield ServedModel(url, tag, artifact, data, home, log)
    stop(proc)


@pytest.fixture(scope="session")
def inference_server_url(inference_server) -> str:
    return inference_server.url
