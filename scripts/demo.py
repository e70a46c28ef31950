"""One full retrain-and-deploy cycle on the embedded defaults (run by `make demo`, which first starts
dockerd + swarm + registry, the embedded S3 and Airflow).

1. upload a simulated initial interaction log to S3 (interactions/date=.../<uuid>.csv);
2. unpause the DAGs: the ingest sensor sees the upload and triggers dkt_retrain, which ingests,
   trains, gates (first run: no champion), packages, builds + pushes the image, deploys the Swarm stack;
3. start the student web client against the API proxy;
4. upload new interactions (students who joined later): the sensor triggers the next run, which
   retrains and rolls the new model out with a rolling update;
5. print the URLs and the time from upload to the new model serving.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from dkt_core.settings import ClientServerSettings, DeploySettings, load
from dkt_core.settings import home as dkt_home

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
API = f"http://127.0.0.1:{load(DeploySettings).api_port}"
CLIENT = f"http://127.0.0.1:{load(ClientServerSettings).port}"
AIRFLOW = f"http://127.0.0.1:{os.environ.get('AIRFLOW_PORT', '8080')}"


def say(msg: str) -> None:
    print(f"[demo {datetime.now():%H:%M:%S}] {msg}", flush=True)


def upload_log(users: int, seed: int, user_offset: int, label: str) -> str:
    """Simulate ``users`` students and upload their log as one raw object (``dkt seed``); returns the path of
    the local copy (the web client's question bank is built from it)."""
    name = f"{label}-{uuid.uuid4()}.csv"
    local = dkt_home() / "demo" / f"{label}.csv"
    out = subprocess.run([str(BIN / "dkt"), "seed", "--users", str(users), "--seed", str(seed), "--user-offset",
                          str(user_offset), "--day", f"{datetime.now(UTC):%Y-%m-%d}", "--name", name,
                          "--out", str(local), "--json"],
                         check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    say(f"uploaded {got['rows']:,} interactions of {users} students to s3://{got['bucket']}/{got['key']}")
    return str(local)


def airflow(*args: str) -> str:
    return subprocess.run([str(BIN / "airflow"), *args], check=True, capture_output=True, text=True).stdout


def runs() -> list[dict]:
    out = airflow("dags", "list-runs", "dkt_retrain", "-o", "json")
    # the CLI may print warnings on stdout before the JSON line
    lines = [ln for ln in out.splitlines() if ln.startswith("[{") or ln.strip() == "[]"]
    return json.loads(lines[-1]) if lines else []


def wait_for_run(after: set[str], timeout_s: float) -> dict:
    """Wait for a dkt_retrain run not in ``after`` to finish; returns it (fails loudly on failure)."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        new = [r for r in runs() if r["run_id"] not in after]
        if new:
            run = new[0]
            if seen != (run["run_id"], run["state"]):
                seen = (run["run_id"], run["state"])
                say(f"dkt_retrain run {run['run_id']}: {run['state']}")
            if run["state"] == "success":
                return run
            if run["state"] == "failed":
                raise SystemExit(f"dkt_retrain run {run['run_id']} failed: see the Airflow UI at {AIRFLOW}")
        time.sleep(5)
    raise SystemExit(f"no dkt_retrain run finished within {timeout_s:.0f}s; see the Airflow UI at {AIRFLOW}")


def served_version() -> str | None:
    """The proxy's /version, asked with the deployer's smoke-test key (the API needs a key: issue 12)."""
    from dkt_core.deploy.apikeys import smoke_key
    from dkt_core.deploy.rollout import served_version as ask
    from dkt_core.settings import ServingSettings

    return ask(API, api_key=smoke_key(load(ServingSettings).api_keys_file))


def wait_for_version(expect_not: str | None, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = served_version()
        if v and v != expect_not:
            return v
        time.sleep(2)
    raise SystemExit(f"the API at {API} did not serve a new model within {timeout_s:.0f}s")


def start_client(bank_data: str) -> None:
    env = {**os.environ, "DKT_API_URL": API, "CLIENT_DATA": bank_data}
    log, pidfile = dkt_home() / "logs" / "client.log", dkt_home() / "run" / "client.pid"
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        proc = subprocess.Popen(["make", "--no-print-directory", "client"], cwd=REPO, env=env, stdout=f, stderr=f,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    # its own session: `make demo-stop` ends the whole group (make, gunicorn and its workers) by this pid
    pidfile.write_text(f"{proc.pid}\n")
    say(f"student web client starting on {CLIENT} (log {log}, pid file {pidfile})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=300, help="students in the initial log")
    ap.add_argument("--new-users", type=int, default=300, help="students in the second upload")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each DAG run")
    args = ap.parse_args()

    before = {r["run_id"] for r in runs()}
    initial = upload_log(args.users, seed=1, user_offset=0, label="initial")
    airflow("dags", "unpause", "dkt_retrain")
    airflow("dags", "unpause", "dkt_ingest_sensor")
    say("DAGs unpaused; the ingest sensor triggers dkt_retrain for the upload (first run: train + deploy)")
    first = wait_for_run(before, args.timeout)
    v1 = wait_for_version(None, 300)
    say(f"model {v1} is serving through the proxy at {API}")
    start_client(initial)

    t0 = time.monotonic()
    upload_log(args.new_users, seed=2, user_offset=100_000, label="new-students")
    wait_for_run(before | {first["run_id"]}, args.timeout)
    current = served_version()
    if current == v1:
        say("the quality gate kept the champion (see the gate task's log); the served model is unchanged")
    else:
        say(f"retrained model {current} is serving: {time.monotonic() - t0:.0f}s from upload to serving")
    print(f"\n  Airflow UI:      {AIRFLOW}  (user admin; password printed by `make airflow` above)"
          f"\n  student client:  {CLIENT}"
          f"\n  inference API:   {API}/version, {API}/predict, {API}/knowledge_state"
          f"\n                   (needs a key: `make api-key NAME=me` prints one; send 'Authorization: Bearer <key>')"
          f"\n  stop everything: make demo-stop\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
