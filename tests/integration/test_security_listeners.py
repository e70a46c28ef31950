"""What the demo's services listen on (issue 12 item 1): `make s3-up`, `make airflow` and the web client as
`make demo` starts it (`make client` in its own session, scripts/demo.py) bind 127.0.0.1 only, TCP and UDP,
read with `ss` for every process of each target's session (tests/listeners.py); `make airflow`'s state
(AIRFLOW_HOME: airflow.db, passwords, logs) is readable by its owner only, and the admin password it generated
appears in no log of the components.

Each target runs for real with a per-test DKT_HOME and free ports, and is stopped by its pid file afterwards
(`make airflow-stop`, `make s3-down`, the client's process group). `make demo`'s Swarm stack, dockerd and the
registry are checked by tests/integration/test_swarm_rollout.py::test_stack_listeners_are_on_loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port
from tests.listeners import Listener, of_session
from tests.secretscan import files_under, leaks, secret

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
# variables of the caller that would point a target elsewhere (an outer make's, Airflow's, the platform's)
FOREIGN = ("AIRFLOW", "DKT_", "AWS_", "MAKE", "MFLAGS")


def _make(env: dict[str, str], *targets: str, timeout: float = 600) -> str:
    proc = subprocess.run(["make", "--no-print-directory", *targets], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"make {' '.join(targets)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _pid(path: Path) -> int:
    assert path.is_file(), f"{path} missing: the target must record its pid"
    return int(path.read_text().split()[0])


def _sockets(leader: int) -> list[Listener]:
    return of_session(leader) + of_session(leader, udp=True)


def _exposed(socks: list[Listener]) -> list[str]:
    return [f"{s.proto} {s.address}:{s.port} {s.processes}" for s in socks if not s.loopback]


def _airflow_healthy(port: int, timeout_s: float = 300) -> dict:
    """Wait until the scheduler, triggerer and DAG processor report healthy (each has started its loop, so
    any server of its own is bound by then)."""
    deadline, health = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
                health = json.loads(r.read())
        except OSError:
            health = {}
        if all((health.get(c) or {}).get("status") == "healthy" for c in ("scheduler", "triggerer", "dag_processor")):
            return health
        time.sleep(2)
    raise AssertionError(f"Airflow's components did not all become healthy in {timeout_s:.0f}s: {health}")


def test_demo_services_listen_on_loopback_only(tmp_path):
    home = tmp_path / "dkt"
    s3_port, airflow_port, client_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env.update({"DKT_HOME": str(home), "DKT_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                "DKT_S3_BUCKET": "dkt-listeners", "AIRFLOW_PORT": str(airflow_port),
                "DKT_CLIENT_PORT": str(client_port), "DKT_RETRAIN_SCHEDULE": "none", "SEED_USERS": "40",
                "DKT_API_URL": f"http://127.0.0.1:{free_port()}", "OMP_WAIT_POLICY": "PASSIVE"})
    client_pidfile = home / "run" / "client.pid"
    client = None
    try:
        _make(env, "s3-up")
        moto = _sockets(_pid(home / "run" / "moto.pid"))
        assert s3_port in {s.port for s in moto} and not _exposed(moto), moto

        # the web client as scripts/demo.py starts it: `make client` in its own session, pid file for demo-stop
        log = (home / "logs").joinpath("client.log").open("ab")
        client = subprocess.Popen(["make", "--no-print-directory", "client"], cwd=REPO, env=env, stdout=log,
                                  stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        client_pidfile.write_text(f"{client.pid}\n")
        wait_for_port(client_port, timeout=300)
        web = _sockets(_pid(client_pidfile))
        assert client_port in {s.port for s in web} and not _exposed(web), web

        _make(env, "airflow", timeout=900)
        _airflow_healthy(airflow_port)
        airflow = _sockets(_pid(home / "airflow" / "standalone.pid"))
        ports = {s.port for s in airflow}
        assert airflow_port in ports and not _exposed(airflow), airflow
        assert not ports & {8793, 8794}, f"Airflow's log servers run: {airflow}"  # --skip-serve-logs
        # make airflow's state is private: umask 077 and a tightened AIRFLOW_HOME
        af = home / "airflow"
        loose = [str(p) for p in [af, *af.rglob("*")] if p.stat().st_mode & 0o077]
        assert (af / "airflow.db").is_file() and (af / "passwords.json").is_file() and not loose, loose
        # the admin password make airflow generated is in its 0600 file only: no component's log holds it
        admin = secret("Airflow admin password", json.loads((af / "passwords.json").read_text())["admin"])
        logs = {**files_under(home / "logs"), **({} if not (af / "logs").is_dir() else files_under(af / "logs"))}
        assert logs and not leaks([admin], logs)
    finally:
        _make(env, "airflow-stop")
        if client is not None:
            os.killpg(_pid(client_pidfile), signal.SIGTERM)  # make, gunicorn and its workers
            client.wait(timeout=60)
        _make(env, "s3-down")
    assert not of_session(client.pid) and not _sockets(client.pid)
