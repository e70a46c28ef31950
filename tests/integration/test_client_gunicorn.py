"""gunicorn-served client without a browser: a worker's open batch is sealed and flushed when gunicorn is
stopped (SIGTERM), so answers given just before a shutdown still reach S3 exactly once; and workers
killed with SIGKILL while answers come in lose no acknowledged answer and duplicate none. Students sign up
first (issue 12); each row names the account's userID."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import requests

from devtools.services import start_client
from dkt_core.storage.s3 import ensure_bucket, list_keys, s3_client
from dkt_core.webclient.bank import SEED_COLUMNS, build_bank
from tests.conftest import free_port
from tests.webclient_http import answer_items, csrf_of, sign_up, wait_healthy

pytestmark = pytest.mark.integration
SECRET = b"gunicorn-test answer-key secret 0123456789"


def test_shutdown_flushes_open_batches(tmp_path, s3_env):
    rows = [("u", f"i{n}", "T1", 1, "2020-01-01 00:00:00", "k1") for n in range(3)]
    bank = build_bank(pd.DataFrame(rows, columns=SEED_COLUMNS), answer_secret=SECRET)
    bank.save(tmp_path / "bank.json")
    ensure_bucket(s3_client(s3_env), s3_env.bucket)
    served = start_client(tmp_path, bank=tmp_path / "bank.json", api_url=f"http://127.0.0.1:{free_port()}",
                          log=tmp_path / "gunicorn.log",
                          env={"DKT_SPOOL_MAX_AGE_S": "3600", "DKT_FLUSH_INTERVAL_S": "3600"})  # only the exit flush
    proc, url, http = served.proc, served.url, requests.Session()
    try:
        user_id = answer_items(http, url, "s1", "T1", bank.tests["T1"])
        client = s3_client(s3_env)
        assert list_keys(client, s3_env.bucket, "interactions/") == []  # still spooled
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    got = []
    for key in list_keys(client, s3_env.bucket, "interactions/"):
        got += list(csv.DictReader(io.StringIO(client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read().decode())))
    want = sorted((user_id, i, str(int(bank.items[i].answer == "A"))) for i in bank.tests["T1"])
    assert sorted((r["userID"], r["assessmentItemID"], r["answerCode"]) for r in got) == want
    assert not list((tmp_path / "spool" / "sealed").glob("*.csv"))
    assert not list((tmp_path / "spool" / "active").glob("*.csv"))


def _workers(master: int) -> list[int]:
    """gunicorn's worker processes: the master's children."""
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _committed(state_db: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(state_db) as db:
        return [tuple(str(v) for v in r) for r in db.execute(f"SELECT {', '.join(SEED_COLUMNS)} FROM interactions")]


def test_kill_9_of_workers_loses_no_acknowledged_answer(tmp_path, s3_env):
    """Answers posted from a bounded loop while workers are SIGKILLed: every answer that got its 303 is in
    S3 exactly once, S3 holds exactly what the state database committed, and no row is torn."""
    tags = ["7224", "12", "123456789", "7", "80", "31337", "9", "4242"]
    seed = [("seed", f"item{n}", "T1", 1, "2020-01-01 00:00:00", tag) for n, tag in enumerate(tags)]
    bank = build_bank(pd.DataFrame(seed, columns=SEED_COLUMNS), answer_secret=SECRET)
    bank.save(tmp_path / "bank.json")
    items = bank.tests["T1"]
    served = start_client(tmp_path, bank=tmp_path / "bank.json", api_url=f"http://127.0.0.1:{free_port()}",
                          log=tmp_path / "gunicorn.log", env={
                              "DKT_SPOOL_MAX_ROWS": "7", "DKT_SPOOL_MAX_AGE_S": "1", "DKT_FLUSH_INTERVAL_S": "0.5",
                              # 60 sign-ups from one address and retried answers: this test is about kills, not limits
                              "DKT_CLIENT_SIGNUP_LIMIT": "1000 per hour", "DKT_CLIENT_ANSWER_LIMIT": "1000 per minute"})
    proc, url, env, http = served.proc, served.url, served.env, requests.Session()
    acked: list[tuple[str, str]] = []
    failed_attempts = 0
    killed: list[int] = []
    stop_killing = threading.Event()

    def killer() -> None:
        for _ in range(6):  # bounded: six kills, a fresh worker each time
            if stop_killing.wait(0.7):
                return
            alive = _workers(proc.pid)
            if alive:
                os.kill(alive[len(killed) % len(alive)], signal.SIGKILL)
                killed.append(alive[len(killed) % len(alive)])

    try:
        students = []  # (userID, its logged-in session, its CSRF token), signed up before the kills start
        for u in range(60):
            session = requests.Session()
            user = sign_up(session, url, f"student{u:02d}")
            students.append((user, session, csrf_of(session.get(f"{url}/quiz/T1", timeout=10).text)))
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        for user, session, token in students:
            for item in items:
                for _ in range(20):  # a killed worker's request fails: the student submits again
                    try:
                        r = session.post(f"{url}/quiz/T1/answer", data={"csrf": token, "item": item, "choice": "A"},
                                         timeout=15, allow_redirects=False)
                    except requests.RequestException:
                        failed_attempts += 1
                        continue
                    if r.status_code == 303:
                        acked.append((user, item))
                        break
                    if r.status_code == 409:  # the lost attempt was stored after all: the quiz moved on
                        break
                    failed_attempts += 1
                else:
                    raise AssertionError(f"{user} could not answer {item} in 20 attempts")
        stop_killing.set()
        thread.join(10)
        assert len(killed) >= 3, "the workers were not killed while answers came in"
        wait_healthy(http, url, 30, alive=lambda: proc.poll() is None)  # gunicorn replaced them
    finally:
        stop_killing.set()
        os.killpg(proc.pid, signal.SIGTERM)  # exit flush of the live workers' batches
        proc.wait(timeout=60)
    # orphans of killed workers that no live worker sealed before the shutdown: the operator's flush
    subprocess.run([sys.executable, "-m", "dkt_core.webclient", "flush"], env=env, check=True, capture_output=True)

    client = s3_client(s3_env)
    rows = []
    for key in list_keys(client, s3_env.bucket, "interactions/"):
        body = client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read().decode()
        assert body.endswith("\n"), f"{key} ends in a torn line"
        rows += [tuple(r) for r in list(csv.reader(io.StringIO(body)))[1:]]
    by_answer = Counter((r[0], r[1]) for r in rows)
    assert [k for k, n in by_answer.items() if n > 1] == []  # nothing twice
    assert set(acked) <= set(by_answer)  # every acknowledged answer arrived
    assert sorted(rows) == sorted(_committed(tmp_path / "state.sqlite"))  # S3 == what was committed
    for r in rows:
        assert r[2:4] == ("T1", str(int(bank.items[r[1]].answer == "A"))) and r[5] == bank.items[r[1]].tag, r
    assert not list((tmp_path / "spool" / "sealed").glob("*.csv"))
    assert not list((tmp_path / "spool" / "active").glob("*.csv"))
    print(f"{len(acked)} acknowledged, {failed_attempts} failed attempts, {len(killed)} workers killed, "
          f"{len(rows)} rows in S3")
