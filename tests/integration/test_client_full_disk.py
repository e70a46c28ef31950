"""A full disk under the web client: its spool on a real 64 KiB tmpfs. Students answer until the disk
refuses (a short write, then ENOSPC), an operator frees space by flushing sealed batches to S3 (moto),
answering goes on. 20 signed-up students take the 10-item test 8 times each (1,600 answers). Every acknowledged answer (303) is in S3 exactly once and in the state database; every
refused one (503) is in neither; no row is corrupted (tag 7224 never arrives as 722).

The state database stays off the small disk: SQLite's WAL grows by pages per commit and would fill 64 KiB
within a few answers; its failed COMMIT taking the spooled row back is tested in
tests/unit/test_webclient_spool.py.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from collections import Counter
from datetime import datetime

import pandas as pd
import pytest

from dkt_core.data.schema import TIMESTAMP_FORMAT
from dkt_core.storage.s3 import list_keys, s3_client
from dkt_core.webclient.app import create_app
from dkt_core.webclient.bank import SEED_COLUMNS, build_bank
from dkt_core.webclient.flusher import flush_sealed
from dkt_core.webclient.settings import ClientSettings
from tests.conftest import skip_missing
from tests.webclient_flask import csrf, sign_up

pytestmark = pytest.mark.integration
TAGS = ["7224", "12", "123456789", "7", "80", "7224", "31337", "9", "4242", "65535"]


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        skip_missing(f"cannot mount a 64 KiB tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN): "
                     f"{(done.stderr or done.stdout).strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _s3_rows(settings) -> list[list[str]]:
    client = s3_client(settings)
    rows = []
    for key in list_keys(client, settings.bucket, "interactions/"):
        body = client.get_object(Bucket=settings.bucket, Key=key)["Body"].read().decode()
        assert body.endswith("\n"), f"{key} ends in a torn line"
        reader = csv.reader(io.StringIO(body))
        assert next(reader) == SEED_COLUMNS
        rows += list(reader)
    return rows


def test_full_disk_acknowledges_only_what_it_stored(tmp_path, small_disk, s3_env, caplog):
    seed = [("seed", f"item{n}", "T1", 1, "2020-01-01 00:00:00", tag) for n, tag in enumerate(TAGS)]
    bank = build_bank(pd.DataFrame(seed, columns=SEED_COLUMNS), answer_secret=b"full-disk test secret 0123456789")
    bank.save(tmp_path / "bank.json")
    items = bank.tests["T1"]
    settings = ClientSettings(bank_path=tmp_path / "bank.json", spool_dir=small_disk / "spool",
                              state_db=tmp_path / "state.sqlite",
                              api_url="http://127.0.0.1:9", spool_max_rows=200, spool_max_age_s=3600,
                              answer_limit="100000 per minute")  # about full disks, not rate limits
    app = create_app(settings, start_flusher=False)
    spool, store = app.extensions["dkt"]["spool"], app.extensions["dkt"]["store"]
    s3 = s3_client(s3_env)
    students = []  # (userID, its logged-in test client, its CSRF token)
    for u in range(20):
        client = app.test_client()
        students.append((sign_up(client, f"student{u:02d}"), client, csrf(client, "/")))

    acked: list[tuple[str, str]] = []
    refused: Counter[tuple[str, str]] = Counter()
    given_up: set[str] = set()
    flushes = 0
    # 1,600 answers of ~50 bytes: the 64 KiB disk fills several times over
    for (user, client, token), _sitting in ((s, k) for k in range(8) for s in students):
        if user in given_up:
            continue  # this student cannot go on past the answer it could not store
        for item in items:
            for attempt in range(4):
                r = client.post("/quiz/T1/answer", data={"csrf": token, "item": item, "choice": "A"})
                if r.status_code == 303:
                    acked.append((user, item))
                    break
                assert r.status_code == 503, r.get_data(as_text=True)
                assert "submit it again" in r.get_data(as_text=True)
                refused[(user, item)] += 1
                # the operator's remedy: ship what is sealed (frees its space); the open batch too if needed
                if attempt >= 1:
                    spool.seal()
                assert flush_sealed(spool, s3, s3_env.bucket).error is None
                flushes += 1
            else:
                given_up.add(user)
                break  # this student cannot go on to the next item
    spool.seal()
    spool.seal_orphans()
    assert flush_sealed(spool, s3, s3_env.bucket).error is None

    assert sum(refused.values()) > 0 and flushes > 0, "the disk never filled: the test proved nothing"
    assert len(acked) >= 1000
    # the disk took part of a row (a short write) before refusing the rest, and that fragment was cut off
    fragments = [int(m) for m in re.findall(r"cut back to \d+ bytes \((\d+) bytes of a partial write", caplog.text)]
    assert any(n > 0 for n in fragments), caplog.text[-2000:]

    rows = _s3_rows(s3_env)
    want = {(u, i): [u, i, "T1", str(int(bank.items[i].answer == "A")), bank.items[i].tag] for u, i in acked}
    got = Counter((r[0], r[1]) for r in rows)
    # exactly once: each (student, item) as often as it was acknowledged (once per sitting), nothing refused
    assert got == Counter(acked), (got - Counter(acked), Counter(acked) - got)
    for r in rows:  # no corrupted row: every field exactly as graded; tags whole
        assert len(r) == 6 and [*r[:4], r[5]] == want[(r[0], r[1])], r
        datetime.strptime(r[4], TIMESTAMP_FORMAT)
    # the student's progress (state database) agrees: acknowledged answers only
    for user in {u for u, _ in acked} | {u for u, _ in refused}:
        assert store.answered(user, "T1") == sum(1 for u, _ in acked if u == user)
