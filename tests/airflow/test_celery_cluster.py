"""Airflow on Celery workers (issue 15 item 1): `make airflow-cluster` for real, shared by this module's tests.

One cluster (PostgreSQL, Redis, API server, scheduler, DAG processor, triggerer, two Celery workers w1/w2, w1 also
on the `gpu` queue that DKT_TRAIN_QUEUE routes train_member to) with a per-module DKT_HOME, free ports and its own
moto server behind a TCP forwarder (HoldingProxy). The tests:
- every listener of every component binds 127.0.0.1, and no password is on a command line, in an environment
  or in a log;
- dkt_retrain runs end to end (REST trigger, tiny LightGBM, deployment off) and its task instances ran on both
  workers (TaskInstance.hostname), train_member on the gpu queue's worker, and each task's log reads through
  the API server whichever worker wrote it;
- a worker is killed (SIGKILL to its process group) in the middle of `ingest`, after the attempt took the
  ingest lease and archived the upload: the forwarder holds the attempt's first write under curated/ so the
  kill lands mid-task every time. The scheduler's heartbeat timeout fails the attempt, the retry runs on the
  other worker, the run succeeds, and the upload is in exactly one new curated version exactly once.
Stopped with `make airflow-cluster-stop` (by pid files)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from glob import glob
from pathlib import Path

import pytest
import requests
from dagutil import TINY, curated_rows, get_json, keys, upload

from tests.conftest import MotoServer, free_port, skip_missing
from tests.forwarder import LoopbackForwarder
from tests.listeners import of_session

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BUCKET = "dkt-test"
# variables of the caller that would point the target elsewhere (the test session's AIRFLOW_HOME, an outer make)
FOREIGN = ("AIRFLOW", "DKT_", "AWS_", "MAKE", "MFLAGS")
CONF = {"models": ["lgbm"], "model_options": TINY, "skip_deploy": True, "min_new_rows": 1, "min_new_users": 1}
RUN_TIMEOUT_S = 600


class HoldingProxy(LoopbackForwarder):
    """A loopback TCP forwarder in front of moto. While armed, the first request that writes under ``curated/``
    (ingest's claim of a new version: the lease is taken and the upload archived by then) is held: nothing more
    of that connection is forwarded, so the attempt hangs in the middle of the task until ``release()``, which
    closes the connection without forwarding the request."""

    def __init__(self, target_port: int):
        self.armed, self.held, self._released = threading.Event(), threading.Event(), threading.Event()
        super().__init__(target_port, upstream_timeout=30)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        super().close()

    def forward(self, data: bytes, upstream: bool) -> bool:
        if upstream and self.armed.is_set() and data.startswith(b"PUT ") \
                and b"/curated/" in data.split(b"\r\n", 1)[0]:
            self.armed.clear()
            self.held.set()
            self._released.wait()
            return False  # never forwarded
        return True


class Cluster:
    """The running cluster: its make environment, paths, REST client and S3 client."""

    def __init__(self, env: dict[str, str], home: Path, port: int, proxy: HoldingProxy, s3):
        self.env, self.home, self.port, self.proxy, self.s3 = env, home, port, proxy, s3
        self.root = home / "airflow-cluster"
        self.url = f"http://127.0.0.1:{port}"
        self._token = ""

    def make(self, *targets: str, timeout: float = 600) -> str:
        proc = subprocess.run(["make", "--no-print-directory", *targets], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"make {' '.join(targets)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc.stdout

    def pidfiles(self) -> dict[str, Path]:
        return {Path(p).stem: Path(p) for p in glob(str(self.root / "run" / "*.pid"))}

    def api(self, method: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
        if not self._token:
            password = json.loads((self.root / "airflow" / "passwords.json").read_text())["admin"]
            r = requests.post(f"{self.url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        r = requests.request(method, f"{self.url}/api/v2{path}", timeout=60, **kw,
                             headers={"Authorization": f"Bearer {self._token}"} | (headers or {}))
        assert r.ok, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r

    def trigger(self) -> str:
        self.api("PATCH", "/dags/dkt_retrain", json={"is_paused": False})
        return self.api("POST", "/dags/dkt_retrain/dagRuns", json={"logical_date": None, "conf": CONF}).json()["dag_run_id"]

    def run_path(self, run_id: str) -> str:
        return f"/dags/dkt_retrain/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def tis(self, run_id: str) -> list[dict]:
        return self.api("GET", f"{self.run_path(run_id)}/taskInstances").json()["task_instances"]

    def ti(self, run_id: str, task_id: str) -> dict:
        return next(t for t in self.tis(run_id) if t["task_id"] == task_id)

    def wait_run(self, run_id: str) -> dict:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            run = self.api("GET", self.run_path(run_id)).json()
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        raise AssertionError(f"run {run_id} not finished after {RUN_TIMEOUT_S}s: {self.tis(run_id)}")

    def log(self, run_id: str, ti: dict) -> list[dict]:
        """The task's log as the UI reads it (the API server's log endpoint): its structured events."""
        path = f"{self.run_path(run_id)}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}"
        params = {"full_content": "true"} | ({"map_index": ti["map_index"]} if ti["map_index"] >= 0 else {})
        return self.api("GET", path, params=params, headers={"Accept": "application/json"}).json()["content"]

    def secrets(self) -> list[str]:
        return [p.read_text().strip() for p in (self.root / "secrets").glob("*.password")]


def _prerequisites() -> None:
    if not glob("/usr/lib/postgresql/*/bin/postgres") or not shutil.which("redis-server"):
        skip_missing("PostgreSQL or Redis is not installed: run `make airflow-cluster-deps` (root: apt-get install -y "
                     "postgresql redis-server)")
    try:
        import asyncpg  # noqa: F401  (Airflow 3's async sessions on PostgreSQL)
    except ImportError:
        skip_missing("asyncpg is not installed in the venv: run `make setup` (airflow extra)")


@pytest.fixture(scope="module")
def cluster():
    _prerequisites()
    # Not under pytest's 0700 tmp root: PostgreSQL runs as the `postgres` user when we are root, and must be able
    # to pass through DKT_HOME (0711: no listing) to reach its own 0700 data directory.
    home = Path(tempfile.mkdtemp(prefix="dkt-cluster-"))
    os.chmod(home, 0o711)
    moto = MotoServer(free_port())
    moto.start()
    proxy = HoldingProxy(moto.port)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env.update({"DKT_HOME": str(home), "AIRFLOW_PORT": str(port), "DKT_S3_ENDPOINT_URL": proxy.endpoint_url,
                "DKT_S3_BUCKET": BUCKET, "DKT_RETRAIN_SCHEDULE": "none", "DKT_DEPLOY": "none",
                "DKT_S3_RETRY_DELAY_S": "1", "DKT_HOLDOUT_FRACTION": "0.25", "OMP_WAIT_POLICY": "PASSIVE",
                "BENTOML_HOME": str(home / "bentoml"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    import boto3

    from dkt_core.storage.s3 import ensure_bucket

    s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    ensure_bucket(s3, BUCKET)
    c = Cluster(env, home, port, proxy, s3)
    try:
        started = time.monotonic()
        c.make("airflow-cluster")
        print(f"\nmake airflow-cluster: healthy in {time.monotonic() - started:.0f} s")
        yield c
    finally:
        try:
            c.make("airflow-cluster-stop", timeout=300)
        finally:
            proxy.close()
            moto.stop()
            leftover = sorted(c.pidfiles())
            shutil.rmtree(home, ignore_errors=True)
    assert not leftover, f"pid files left after make airflow-cluster-stop: {leftover}"


@pytest.fixture(scope="module")
def logs():
    """(initial, later) interactions of 120 simulated users split at a point in time."""
    from dkt_core.data.simulate import SimulationConfig, simulate

    df = simulate(SimulationConfig(users=120, seed=3, tests=40, tags=20, mean_tests_per_user=8))
    cut = df["Timestamp"].quantile(0.75)
    return df[df["Timestamp"] < cut].reset_index(drop=True), df[df["Timestamp"] >= cut].reset_index(drop=True)


def _pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def test_cluster_listens_on_loopback_only_and_keeps_secrets_off_command_lines(cluster):
    pidfiles = cluster.pidfiles()
    expected = {"postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2"}
    assert expected <= set(pidfiles), f"components without a pid file: {expected - set(pidfiles)}"
    ports = dict(line.split("=") for line in (cluster.root / "run" / "ports.env").read_text().split())
    socks = {name: of_session(_pid(path)) for name, path in pidfiles.items()}
    assert int(ports["PG_PORT"]) in {s.port for s in socks["postgres"]}, socks["postgres"]
    assert int(ports["REDIS_PORT"]) in {s.port for s in socks["redis"]}, socks["redis"]
    assert cluster.port in {s.port for s in socks["api-server"]}, socks["api-server"]
    exposed = [f"{n}: {s.address}:{s.port} {s.processes}" for n, ss in socks.items() for s in ss if not s.loopback]
    assert not exposed, f"listeners not on loopback: {exposed}"
    # no log server: the workers and the scheduler run with --skip-serve-logs
    assert not socks["worker-1"] and not socks["worker-2"] and not socks["scheduler"], socks
    # Redis refuses a client without the password
    with socket.create_connection(("127.0.0.1", int(ports["REDIS_PORT"])), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(200).startswith(b"-NOAUTH"), "Redis answered without a password"
    # the passwords: files 0600, never on a command line, in an environment or in a component log
    secrets = cluster.secrets()
    assert len(secrets) == 3 and all(len(x) >= 32 for x in secrets)
    for path in (cluster.root / "secrets").iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert (cluster.root / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
    leaders = {_pid(p) for p in pidfiles.values()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getsid(int(proc.name)) not in leaders:
                continue
            blobs = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue  # ended meanwhile
        assert not any(x.encode() in blobs for x in secrets), f"a password in process {proc.name}'s cmdline/environ"
    for log in (cluster.root / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(x in text for x in secrets), f"a password in {log}"


def test_retrain_runs_end_to_end_on_two_workers(cluster, logs):
    initial, _ = logs
    upload(cluster.s3, BUCKET, "interactions/date=seed/initial.csv", initial)
    started = time.monotonic()
    run_id = cluster.trigger()
    run = cluster.wait_run(run_id)
    elapsed = time.monotonic() - started
    tis = cluster.tis(run_id)
    assert run["state"] == "success", [(t["task_id"], t["state"]) for t in tis]
    ran = [t for t in tis if t["state"] == "success"]
    per_worker = Counter(t["hostname"] for t in ran)
    print(f"\ndkt_retrain on the cluster: {elapsed:.0f} s, {len(ran)} task instances, per worker {dict(per_worker)}")
    assert len(per_worker) >= 2 and all(h.startswith(("w1@", "w2@")) for h in per_worker), per_worker
    train = [t for t in ran if t["task_id"] == "train_member"]
    assert train and all(t["queue"] == "gpu" and t["hostname"].startswith("w1@") for t in train), train
    assert all(t["queue"] == "default" for t in ran if t["task_id"] != "train_member")
    assert get_json(cluster.s3, BUCKET, "models/champion.json")["run_id"] == run_id
    # the UI reads every task's log, whichever worker wrote it (one log folder, no log server)
    for host in per_worker:
        ti = next(t for t in ran if t["hostname"] == host)
        events = cluster.log(run_id, ti)
        own = [e for e in events if e.get("task_id") == ti["task_id"] and e.get("try_number") == ti["try_number"]]
        assert len(own) >= 3, f"no log of {ti['task_id']} (ran on {host}) through the API server: {events[:5]}"
    member = cluster.log(run_id, train[0])
    assert any(str(e.get("event", "")).startswith("MEMBER lgbm: AUC") for e in member), member[-10:]


def _versions(s3) -> set[str]:
    """Committed curated versions (those with their metadata.json)."""
    return {k.split("/")[1] for k in keys(s3, BUCKET, "curated/v=") if k.endswith("/metadata.json")}


def test_a_worker_killed_mid_ingest_is_retried_on_the_other_and_nothing_is_ingested_twice(cluster, logs):
    _, later = logs
    versions_before = _versions(cluster.s3)
    latest_before = cluster.s3.get_object(Bucket=BUCKET, Key="curated/LATEST")["Body"].read().decode().strip() \
        if versions_before else None
    rows_before = len(curated_rows(cluster.s3, BUCKET, latest_before)) if latest_before else 0
    key = f"interactions/date=later/later-{int(time.time())}.csv"
    upload(cluster.s3, BUCKET, key, later)

    cluster.proxy.armed.set()
    run_id = cluster.trigger()
    assert cluster.proxy.held.wait(300), f"ingest never wrote under curated/: {cluster.tis(run_id)}"
    ingest = cluster.ti(run_id, "ingest")
    assert ingest["state"] == "running" and ingest["try_number"] == 1, ingest
    victim = ingest["hostname"].split("@")[0]  # w1 / w2
    pidfile = cluster.root / "run" / f"worker-{victim[1:]}.pid"
    os.killpg(_pid(pidfile), signal.SIGKILL)  # the worker, its pool and the task's supervisor and process
    killed = time.monotonic()
    cluster.proxy.release()  # the dead attempt's held write is dropped, never forwarded

    # the scheduler fails the attempt once its heartbeats stop; the retry runs on the surviving worker
    deadline = time.monotonic() + 300
    while (ingest := cluster.ti(run_id, "ingest"))["state"] != "success":
        assert ingest["state"] not in ("failed", "upstream_failed"), ingest
        assert time.monotonic() < deadline, f"ingest not retried: {ingest}"
        time.sleep(2)
    assert ingest["try_number"] >= 2 and not ingest["hostname"].startswith(f"{victim}@"), ingest
    tries = cluster.api("GET", f"{cluster.run_path(run_id)}/taskInstances/ingest/tries").json()["task_instances"]
    first = next(t for t in tries if t["try_number"] == 1)
    assert first["state"] in ("failed", "up_for_retry") and first["hostname"].startswith(f"{victim}@"), tries
    print(f"\nkilled {victim} during ingest; try {ingest['try_number']} ran on {ingest['hostname']}, "
          f"succeeded {time.monotonic() - killed:.0f} s after the kill")
    cluster.make("airflow-cluster")  # brings the killed worker back (the gpu queue needs w1), starts nothing else

    run = cluster.wait_run(run_id)
    tis = cluster.tis(run_id)
    assert run["state"] == "success", [(t["task_id"], t["state"], t["try_number"]) for t in tis]
    print(f"run with the kill: {time.monotonic() - killed:.0f} s from the kill to its end; per worker "
          f"{dict(Counter(t['hostname'] for t in tis if t['state'] == 'success'))}")
    new_versions = _versions(cluster.s3) - versions_before
    assert len(new_versions) == 1, f"the run made {sorted(new_versions)} (one version expected)"
    (version,) = new_versions
    meta = get_json(cluster.s3, BUCKET, f"curated/{version}/metadata.json")
    assert meta["run_id"] == run_id
    rows = curated_rows(cluster.s3, BUCKET, version)
    assert len(rows) == rows_before + len(later), (len(rows), rows_before, len(later))
    assert not rows.duplicated().any()
    assert [s["key"] for s in meta["sources"]] == [key]
    body = cluster.s3.get_object(Bucket=BUCKET, Key="curated/LATEST")["Body"].read().decode().strip()
    assert body == version


def test_train_member_queue_follows_dkt_train_queue(dagbag):
    """DKT_TRAIN_QUEUE is the queue of the training tasks only; unset: Airflow's default queue."""
    dag = dagbag.dags["dkt_retrain"]
    assert {t.queue for t in dag.tasks} == {"default"}  # this session parses without DKT_TRAIN_QUEUE
    probe = ("from airflow.dag_processing.dagbag import DagBag; d = DagBag(dag_folder='dags').dags['dkt_retrain']; "
             "print(sorted({(t.task_id, t.queue) for t in d.tasks if t.queue != 'default'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, "DKT_TRAIN_QUEUE": "gpu"},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "[('train_member', 'gpu')]", out
