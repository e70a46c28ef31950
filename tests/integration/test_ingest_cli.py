"""`dkt ingest` as a real subprocess against a real moto server: JSON summary, exit codes, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dkt_core.storage.s3 import ensure_bucket, s3_client
from tests.conftest import free_port
from tests.integration._ingest_helpers import HEADER, rows, upload

pytestmark = pytest.mark.integration

DKT = shutil.which("dkt", path=str(Path(sys.executable).parent))


def dkt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert DKT, "the dkt console script is not installed in this venv (run make setup)"
    return subprocess.run([DKT, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_dkt_ingest_json_exit_codes_and_quarantine(s3_env):
    client = s3_client(s3_env)
    ensure_bucket(client, "cli-bucket")
    upload(client, "cli-bucket", "uploads/a.csv", HEADER + rows("c1", 4))
    upload(client, "cli-bucket", "uploads/junk.csv", b"\x00\x01\x02 not a csv")

    r = dkt("ingest", "--bucket", "cli-bucket", "--prefix", "uploads/", "--json")
    assert r.returncode == 0, r.stderr  # a quarantined object is not an error
    doc = json.loads(r.stdout)
    assert {k: doc[k] for k in ("status", "data_version", "data_uri", "rows_added", "objects_ingested",
                                "objects_quarantined")} == {
        "status": "ingested", "data_version": "v=000001",
        "data_uri": "s3://cli-bucket/curated/v=000001/interactions.parquet",
        "rows_added": 4, "objects_ingested": 1, "objects_quarantined": 1}
    assert doc["run_id"].startswith("manual__")

    again = dkt("ingest", "--bucket", "cli-bucket", "--prefix", "uploads/", "--run-id", "backfill-1", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "nothing_new"
    replay = dkt("ingest", "--bucket", "cli-bucket", "--prefix", "uploads/", "--run-id", doc["run_id"])
    assert replay.returncode == 0 and "status=ingested" in replay.stdout


@pytest.mark.parametrize("args, message", [
    (["--prefix", "curated/"], "overlaps ingestion's own areas"),
    (["--prefix", "../x/"], "is not allowed"),
    (["--run-id", "bad id/../x"], "run id"),
    (["--bucket", "no-such-bucket"], "make s3-seed"),
])
def test_dkt_ingest_usage_errors_exit_2_with_one_sentence(s3_env, args, message):
    r = dkt("ingest", *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_dkt_ingest_with_s3_down_exits_2_without_traceback(s3_env):
    r = dkt("ingest", env={"DKT_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 2
    assert "unreachable" in r.stderr and "Traceback" not in r.stderr
