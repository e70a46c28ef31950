"""gunicorn-served client without a browser: a worker's open batch is sealed and flushed when gunicorn is
stopped (SIGTERM), so answers given just before a shutdown still reach S3 exactly once."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from dkt_core.storage.s3 import ensure_bucket, list_keys, s3_client
from dkt_core.webclient.bank import SEED_COLUMNS, build_bank
from tests.webclient_http import answer_items, wait_healthy

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shutdown_flushes_open_batches(tmp_path, s3_env):
    rows = [("u", f"i{n}", "T1", 1, "2020-01-01 00:00:00", "k1") for n in range(3)]
    bank = build_bank(pd.DataFrame(rows, columns=SEED_COLUMNS))
    bank.save(tmp_path / "bank.json")
    ensure_bucket(s3_client(s3_env), s3_env.bucket)
    port = _free_port()
    env = {**os.environ, "DKT_CLIENT_PORT": str(port), "DKT_CLIENT_WORKERS": "2",
           "DKT_CLIENT_BANK": str(tmp_path / "bank.json"), "DKT_CLIENT_SPOOL_DIR": str(tmp_path / "spool"),
           "DKT_CLIENT_STATE_DB": str(tmp_path / "state.sqlite"), "DKT_API_URL": f"http://127.0.0.1:{_free_port()}",
           "DKT_SPOOL_MAX_AGE_S": "3600", "DKT_FLUSH_INTERVAL_S": "3600"}  # only the exit flush can send
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    proc = subprocess.Popen([gunicorn, "-c", "python:dkt_core.webclient.gunicorn_conf", "dkt_core.webclient.wsgi:app"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, http = f"http://127.0.0.1:{port}", requests.Session()
    try:
        wait_healthy(http, url, 30, alive=lambda: proc.poll() is None)
        answer_items(http, url, "s1", "T1", bank.tests["T1"])
        client = s3_client(s3_env)
        assert list_keys(client, s3_env.bucket, "interactions/") == []  # still spooled
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    got = []
    for key in list_keys(client, s3_env.bucket, "interactions/"):
        got += list(csv.DictReader(io.StringIO(client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read().decode())))
    want = sorted((i, str(int(bank.items[i].answer == "A"))) for i in bank.tests["T1"])
    assert sorted((r["assessmentItemID"], r["answerCode"]) for r in got) == want
    assert not list((tmp_path / "spool" / "sealed").glob("*.csv"))
    assert not list((tmp_path / "spool" / "active").glob("*.csv"))
