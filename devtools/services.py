"""The one service launcher of tests and benchmarks: package an artifact into a private BentoML store and run
`bentoml serve` of bento_service/ on a free loopback port until /readyz (or /livez) answers 200; and run the
web client under gunicorn (``start_client``) until /healthz answers 200.

The process runs in its own session, so ``stop`` ends it and its workers by process group (never by a name
pattern). The service requires an API key (dkt_core/serving/auth.py): unless ``env`` sets DKT_API_KEYS_FILE or
DKT_API_AUTH, a key-hash file with one key named ``devtools`` is made beside the log; the returned ``Served``
holds the key (``served.headers`` for requests) and unpacks as ``proc, url``. Not shipped (see
devtools/__init__.py).
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
from dataclasses import dataclass
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


@dataclass
class Served:
    proc: subprocess.Popen
    url: str
    key: str | None  # the API key made for this server (None when the caller configured auth itself)
    keys_file: Path | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def __iter__(self):  # `proc, url = start_bentoml(...)`
        return iter((self.proc, self.url))


def start_bentoml(home: Path, tag: str, log: Path, *, ready_timeout: float = 120.0,
                  wait_ready: bool = True, env: dict | None = None) -> Served:
    """`bentoml serve service:DKTService` of ``tag`` from the store at ``home`` on a free port; returns it
    once /readyz (``wait_ready``) or /livez is 200. Output goes to ``log``."""
    from dkt_core.serving.apikeys import ensure_key

    port = free_port()
    exe = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    key = keys_file = None
    if not {"DKT_API_KEYS_FILE", "DKT_API_AUTH"} & set(env or {}):
        keys_file = Path(log).parent / "api_keys.json"
        key = ensure_key(keys_file, "devtools", Path(log).parent / "devtools.key")
    full_env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
                "DKT_MODEL_TAG": tag, "OMP_WAIT_POLICY": "PASSIVE",
                **({"DKT_API_KEYS_FILE": str(keys_file)} if keys_file else {}), **(env or {})}
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
            return Served(proc, url, key, keys_file)
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


@dataclass
class ClientServer:
    proc: subprocess.Popen  # gunicorn's master, in its own session (stop it by process group)
    url: str
    env: dict[str, str]  # the environment it runs with (e.g. for `python -m dkt_core.webclient flush`)
    spool: Path  # its spool directory (DKT_CLIENT_SPOOL_DIR)


def start_client(home: Path, *, bank: Path, api_url: str, log: Path, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0) -> ClientServer:
    """gunicorn serving the web client (dkt_core.webclient.gunicorn_conf, 2 workers) on a free loopback port,
    with ``home`` as DKT_HOME, spool ``home/spool``, state ``home/state.sqlite``, the question bank ``bank``
    and the inference service at ``api_url``; ``env`` adds or overrides variables. Returns once /healthz is
    200; output goes to ``log``."""
    port = free_port()
    full_env = {**os.environ, "DKT_HOME": str(home), "DKT_CLIENT_PORT": str(port), "DKT_CLIENT_WORKERS": "2",
                "DKT_CLIENT_BANK": str(bank), "DKT_CLIENT_SPOOL_DIR": str(home / "spool"),
                "DKT_CLIENT_STATE_DB": str(home / "state.sqlite"), "DKT_API_URL": api_url, **(env or {})}
    exe = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    with open(log, "ab") as out:
        proc = subprocess.Popen([exe, "-c", "python:dkt_core.webclient.gunicorn_conf", "dkt_core.webclient.wsgi:app"],
                                env=full_env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        if _status(url + "/healthz") == 200:
            return ClientServer(proc, url, full_env, Path(full_env["DKT_CLIENT_SPOOL_DIR"]))
        time.sleep(0.2)
    stop(proc)
    raise TimeoutError(f"{url}/healthz not 200 after {ready_timeout}s; see {log}:\n{log.read_text()[-3000:]}")
