"""The one service launcher of tests and benchmarks: package an artifact into a private BentoML store and run
`bentoml serve` of bento_service/ on a free loopback port until /readyz (or /livez) answers 200.

The process runs in its own session, so ``stop`` ends it and its workers by process group (never by a name
pattern). Not shipped (see devtools/__init__.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def package_model(artifact: Path, home: Path) -> str:
    """`dkt package` ``artifact`` into the BentoML store at ``home``; returns the tag. A subprocess, so this
    interpreter's BentoML default store is never bound to (or written in) ~/bentoml."""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    out = subprocess.run([sys.executable, "-m", "dkt_core.cli", "package", "--model", str(artifact)],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def start_bentoml(home: Path, tag: str, log: Path, *, ready_timeout: float = 120.0,
                  wait_ready: bool = True, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`bentoml serve service:DKTService` of ``tag`` from the store at ``home`` on a free port; returns
    (process, base URL) once /readyz (``wait_ready``) or /livez is 200. Output goes to ``log``."""
    port = free_port()
    exe = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    full_env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
                "DKT_MODEL_TAG": tag, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen([exe, "serve", "service:DKTService", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO / "bento_service", env=full_env, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    path = "/readyz" if wait_ready else "/livez"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        if _status(url + path) == 200:
            return proc, url
        time.sleep(0.25)
    stop(proc)
    raise TimeoutError(f"{url}{path} not 200 after {ready_timeout}s; see {log}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (the server and its workers), SIGKILL after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
