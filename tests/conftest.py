"""Shared fixtures: tiny synthetic interaction logs, a real moto S3 server, the shared data folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DKT_SHARED_DATA", REPO.parent / "shared" / "data"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class MotoServer:
    """A real moto S3 HTTP server, stoppable and restartable (for outage tests). On loopback by default; the
    Swarm tests bind it to the host's docker bridge address so containers can reach it too."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.endpoint_url = f"http://{host}:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        self.proc = subprocess.Popen(
            [exe, "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, host=self.host)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # moto_server may ignore SIGTERM
            self.proc.wait(timeout=10)
        self.proc = None

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"))


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """Environment pointing dkt_core's S3 settings at a clean moto server; yields the S3Settings."""
    from dkt_core.storage.s3 import S3Settings

    moto_server.reset()
    monkeypatch.setenv("DKT_S3_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("DKT_S3_BUCKET", "dkt-test")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return S3Settings.from_env()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "assist2009_dev.csv.gz").exists():
        pytest.skip(f"real data folder {SHARED_DATA} is absent; tests on real data are skipped")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_log():
    """A small synthetic log (typed, sorted per user by time): 60 users, ~18k rows."""
    from dkt_core.data.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(users=60, seed=7, tests=80, tags=30))


@pytest.fixture(scope="session")
def tiny_log_csv(tiny_log, tmp_path_factory) -> Path:
    from dkt_core.data.simulate import write_log

    path = tmp_path_factory.mktemp("logs") / "tiny.csv"
    write_log(tiny_log, str(path))
    return path
