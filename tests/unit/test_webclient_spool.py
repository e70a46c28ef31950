"""Durable spool + S3 flush against a real moto server: sealing, orphans, several writers, S3 outage."""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import shutil

from dkt_core.storage.s3 import list_keys, s3_client
from dkt_core.webclient.bank import SEED_COLUMNS
from dkt_core.webclient.flusher import FlushWorker, flush_sealed
from dkt_core.webclient.spool import HEADER, Spool, s3_key_for

CTX = mp.get_context("fork")  # children inherit nothing but the spool path and their rows


def _row(user: str, i: int) -> list[object]:
    return [user, f"item{i}", "T1", i % 2, f"2020-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}", "k1"]


def _s3_rows(settings) -> list[tuple[str, ...]]:
    client = s3_client(settings)
    rows: list[tuple[str, ...]] = []
    for key in list_keys(client, settings.bucket, "interactions/"):
        body = client.get_object(Bucket=settings.bucket, Key=key)["Body"].read().decode()
        reader = csv.reader(io.StringIO(body))
        assert next(reader) == SEED_COLUMNS, f"{key} lacks the seed header"
        rows.extend(tuple(r) for r in reader)
    return rows


def _expected(rows) -> list[tuple[str, ...]]:
    return [tuple(str(v) for v in r) for r in rows]


def test_append_seals_by_size_and_age(tmp_path):
    spool = Spool(tmp_path, max_rows=3, max_age_s=3600)
    spool.append([_row("u", i) for i in range(2)])
    assert spool.sealed_batches() == [] and spool.current is not None
    spool.append([_row("u", 2)])  # third row: full -> sealed
    (sealed,) = spool.sealed_batches()
    assert sealed.read_bytes().startswith(HEADER) and len(sealed.read_text().splitlines()) == 4
    assert spool.current is None and list(spool.active_dir.iterdir()) == []
    spool.append([_row("u", 3)])
    assert spool.seal_if_old() is None  # young batch stays open
    spool.max_age_s = 0
    assert spool.seal_if_old() is not None and len(spool.sealed_batches()) == 2
    key = s3_key_for(sealed)
    assert key.startswith("interactions/date=") and key.endswith(sealed.name.split("_", 1)[1])


def _write_and_die(root, rows, torn: bytes) -> None:
    spool = Spool(root, max_rows=10_000, max_age_s=3600)
    spool.append(rows)
    if torn:
        os.write(spool._fd, torn)  # a crash in the middle of a line
    os._exit(0)  # no seal, no cleanup: the batch is an orphan


def test_orphans_of_dead_writers_are_sealed_without_torn_lines(tmp_path):
    rows = [_row("dead", i) for i in range(4)]
    p = CTX.Process(target=_write_and_die, args=(tmp_path, rows, b"dead,item9,T1,"))
    p.start(), p.join()
    live = Spool(tmp_path, max_rows=10_000, max_age_s=3600)
    live.append([_row("live", 0)])
    (orphan_sealed,) = live.seal_orphans()  # the live writer's own batch is not touched
    assert live.current is not None and live.current.exists()
    lines = orphan_sealed.read_text().splitlines()
    assert lines[1:] == [",".join(map(str, r)) for r in rows]


def _writer(root, user: str, n: int) -> None:
    spool = Spool(root, max_rows=7, max_age_s=3600)
    for i in range(n):
        spool.append([_row(user, i)])
    spool.seal()


def test_many_writers_then_flush_exactly_once(tmp_path, s3_env):
    procs = [CTX.Process(target=_writer, args=(tmp_path, f"u{w}", 30)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    spool = Spool(tmp_path)
    assert len(spool.sealed_batches()) == 4 * 5  # 30 rows at 7 per batch -> 5 batches per writer
    client = s3_client(s3_env)
    # Two flushers race over the same spool: claims keep each batch to one put.
    flushers = [CTX.Process(target=_flush_once, args=(tmp_path, s3_env)) for _ in range(2)]
    for p in flushers:
        p.start()
    for p in flushers:
        p.join()
    result = flush_sealed(spool, client, s3_env.bucket)  # whatever is left (normally nothing)
    assert result.error is None and spool.sealed_batches() == []
    assert len(list_keys(client, s3_env.bucket, "interactions/")) == 20
    got = _s3_rows(s3_env)
    want = _expected(_row(f"u{w}", i) for w in range(4) for i in range(30))
    assert sorted(got) == sorted(want) and len(got) == len(set(got)) == 120


def _flush_once(root, settings) -> None:
    flush_sealed(Spool(root), s3_client(settings), settings.bucket)


def test_flush_while_s3_is_down_then_recovers(tmp_path, s3_env, moto_server):
    spool = Spool(tmp_path, max_rows=2, max_age_s=3600)
    worker = FlushWorker(spool, interval_s=60, settings=s3_env)
    spool.append([_row("a", 0), _row("a", 1)])
    assert worker.run_once().sent  # S3 up: first batch delivered
    spool.append([_row("a", 2), _row("a", 3)])
    spool.append([_row("a", 4)])  # stays in the open batch
    moto_server.stop()
    try:
        down = worker.run_once()
        assert down.error and "failed" in down.error and down.pending == 1
        assert len(spool.sealed_batches()) == 1  # kept locally, nothing lost
        spool.append([_row("a", 5)])  # the app keeps accepting answers while S3 is down
    finally:
        moto_server.start()  # a fresh, empty moto: the bucket is re-created on the retry
    final = worker.stop()
    assert final is not None and final.error is None and len(final.sent) == 2
    assert spool.sealed_batches() == [] and list(spool.active_dir.iterdir()) == []
    got = _s3_rows(s3_env)
    # moto restarted empty, so only what was flushed after the outage is there: rows 2..5 exactly once
    assert sorted(got) == sorted(_expected(_row("a", i) for i in range(2, 6)))


def test_retried_put_overwrites_the_same_key(tmp_path, s3_env):
    spool = Spool(tmp_path, max_rows=1)
    spool.append([_row("r", 0)])
    (batch,) = spool.sealed_batches()
    copy = tmp_path / "copy.csv"
    shutil.copy(batch, copy)
    client = s3_client(s3_env)
    assert flush_sealed(spool, client, s3_env.bucket).sent == [s3_key_for(batch)]
    shutil.copy(copy, batch)  # as if the put succeeded but the file was not removed (crash, lost reply)
    assert flush_sealed(spool, client, s3_env.bucket).sent == [s3_key_for(batch)]
    assert len(list_keys(client, s3_env.bucket, "interactions/")) == 1
    assert _s3_rows(s3_env) == _expected([_row("r", 0)])


def test_flush_reports_missing_bucket_when_creation_is_off(tmp_path, s3_env):
    spool = Spool(tmp_path, max_rows=1)
    spool.append([_row("b", 0)])
    result = flush_sealed(spool, s3_client(s3_env), f"{s3_env.bucket}-absent", create_bucket=False)
    assert result.error and "NoSuchBucket" in result.error and len(spool.sealed_batches()) == 1
