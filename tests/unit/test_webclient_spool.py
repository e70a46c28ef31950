"""Durable spool + S3 flush against a real moto server: sealing, orphans, several writers, S3 outage, and
all-or-nothing appends (a short write injected by replacing ``os.write``: the kernel's partial write on a
filling disk cannot be forced otherwise; the real full disk is tests/integration/test_client_full_disk.py)."""

from __future__ import annotations

import csv
import errno
import io
import multiprocessing as mp
import os
import shutil
from dataclasses import replace

import pytest

from dkt_core.storage.s3 import list_keys, s3_client
from dkt_core.webclient.bank import SEED_COLUMNS
from dkt_core.webclient.flusher import FlushWorker, flush_sealed
from dkt_core.webclient.spool import HEADER, Spool, SpoolWriteError, encode_rows, s3_key_for
from tests.conftest import MotoServer, free_port

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


@pytest.fixture
def own_s3(s3_env):
    """A moto server of this test alone (the outage stops it; the session's server keeps running), with the
    credentials of ``s3_env``."""
    server = MotoServer(free_port())
    server.start()
    yield server, replace(s3_env, endpoint_url=server.endpoint_url)
    server.stop()


def test_flush_while_s3_is_down_then_recovers(tmp_path, own_s3):
    server, settings = own_s3
    spool = Spool(tmp_path, max_rows=2, max_age_s=3600)
    worker = FlushWorker(spool, interval_s=60, settings=settings)
    spool.append([_row("a", 0), _row("a", 1)])
    assert worker.run_once().sent  # S3 up: first batch delivered
    spool.append([_row("a", 2), _row("a", 3)])
    spool.append([_row("a", 4)])  # stays in the open batch
    server.stop()
    try:
        down = worker.run_once()
        assert down.error and "failed" in down.error and down.pending == 1
        assert len(spool.sealed_batches()) == 1  # kept locally, nothing lost
        spool.append([_row("a", 5)])  # the app keeps accepting answers while S3 is down
    finally:
        server.start()  # a fresh, empty moto: the bucket is re-created on the retry
    final = worker.stop()
    assert final is not None and final.error is None and len(final.sent) == 2
    assert spool.sealed_batches() == [] and list(spool.active_dir.iterdir()) == []
    got = _s3_rows(settings)
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


# --- all or nothing: short writes, full disks, failed commits ------------------------------------------
def _short_then(fail: OSError | None, target: list[int]):
    """An ``os.write`` that, on the spool's batch fd, writes only half the bytes of the first call (the
    kernel's partial write when a disk fills mid-page) and then raises ``fail`` (or writes normally)."""
    real, calls = os.write, []

    def fake(fd, data):
        if fd not in target:
            return real(fd, data)
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, bytes(data[: len(data) // 2]))
        if fail is not None:
            raise fail
        return real(fd, data)

    return fake, calls


def test_a_short_write_is_completed_by_the_loop(tmp_path, monkeypatch):
    spool = Spool(tmp_path, max_rows=100)
    spool.append([_row("a", 0)])
    fake, calls = _short_then(None, [spool._fd])
    monkeypatch.setattr(os, "write", fake)
    spool.append([["a", "item1", "T1", 1, "2020-01-01 00:00:01", "7224"]])
    monkeypatch.undo()
    assert len(calls) == 2  # half, then the rest
    assert spool.current.read_bytes() == HEADER + b"a,item0,T1,0,2020-01-01 00:00:00,k1\n" \
        b"a,item1,T1,1,2020-01-01 00:00:01,7224\n"


def test_a_short_write_then_enospc_keeps_nothing_and_the_next_row_is_clean(tmp_path, monkeypatch, s3_env, caplog):
    spool = Spool(tmp_path, max_rows=100)
    spool.append([_row("a", 0)])
    before = spool.current.read_bytes()
    fake, calls = _short_then(OSError(errno.ENOSPC, "No space left on device"), [spool._fd])
    monkeypatch.setattr(os, "write", fake)
    with pytest.raises(SpoolWriteError, match="No space left on device") as info:
        spool.append([["a", "item1", "T1", 1, "2020-01-01 00:00:01", "7224"]])
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and len(calls) == 2
    assert spool.current.read_bytes() == before  # the half-written fragment was cut off
    assert "(19 bytes of a partial write dropped): 38-byte append failed" in caplog.text  # half the row
    spool.append([["a", "item2", "T1", 0, "2020-01-01 00:00:02", "7225"]])  # the disk has room again
    spool.seal()
    assert flush_sealed(spool, s3_client(s3_env), s3_env.bucket).error is None
    assert _s3_rows(s3_env) == [tuple(map(str, _row("a", 0))), ("a", "item2", "T1", "0", "2020-01-01 00:00:02", "7225")]


def test_no_room_for_a_new_batch_leaves_no_file(tmp_path, monkeypatch):
    spool = Spool(tmp_path, max_rows=100)
    real = os.write

    def full(fd, data):
        if bytes(data) == HEADER:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SpoolWriteError, match="cannot start a spool batch"):
        spool.append([_row("a", 0)])
    monkeypatch.undo()
    assert list(spool.active_dir.iterdir()) == [] and spool.current is None
    spool.append([_row("a", 1)])
    assert spool.current.read_bytes() == HEADER + encode_rows([_row("a", 1)])


def test_a_failed_commit_takes_the_spooled_row_back(tmp_path):
    spool = Spool(tmp_path, max_rows=2)
    spool.append([_row("a", 0)])
    with pytest.raises(RuntimeError, match="commit failed"), spool.appending([_row("a", 1)]):
        raise RuntimeError("commit failed")  # e.g. SQLite: database or disk is full
    assert spool.current.read_bytes() == HEADER + encode_rows([_row("a", 0)])
    with spool.appending([_row("a", 2)]):
        pass
    (sealed,) = spool.sealed_batches()  # the refused row did not count towards the batch size either
    assert sealed.read_bytes() == HEADER + encode_rows([_row("a", 0), _row("a", 2)])


def test_state_store_records_nothing_when_the_spool_refuses(tmp_path):
    from dkt_core.webclient.history import StateStore

    store = StateStore(tmp_path / "state.sqlite")
    row = dict(zip(SEED_COLUMNS, ["u", "i0", "T1", 1, "2020-01-01 00:00:00", "k"], strict=True))

    def refusing():
        raise SpoolWriteError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SpoolWriteError):
        store.record(row, ["i0", "i1"], refusing)
    assert store.answered("u", "T1") == 0
    spool = Spool(tmp_path / "spool")
    store.record(row, ["i0", "i1"], lambda: spool.appending([[row[c] for c in SEED_COLUMNS]]))
    assert store.answered("u", "T1") == 1 and spool.current.read_text().count("\n") == 2


def test_flush_drops_a_torn_last_line(tmp_path, s3_env, caplog):
    spool = Spool(tmp_path)
    torn = spool.sealed_dir / "2020-01-01_torn.csv"
    torn.write_bytes(HEADER + encode_rows([_row("t", 0)]) + b"t,item1,T1,1,2020-01-01 00:00:01,722")
    header_only = spool.sealed_dir / "2020-01-01_empty.csv"
    header_only.write_bytes(HEADER + b"t,item9,T")
    result = flush_sealed(spool, s3_client(s3_env), s3_env.bucket)
    assert result.error is None and result.sent == [s3_key_for(torn)]
    assert _s3_rows(s3_env) == [tuple(map(str, _row("t", 0)))]  # tag 7224 never arrives as 722
    assert "dropping a torn last line (36 bytes)" in caplog.text and "no complete row" in caplog.text
    assert spool.sealed_batches() == []


def test_an_orphans_uncommitted_last_row_is_dropped(tmp_path, caplog):
    """A worker killed between its spool write and its state commit never acknowledged that row."""
    rows = [_row("dead", i) for i in range(3)]
    p = CTX.Process(target=_write_and_die, args=(tmp_path, rows, b""))
    p.start(), p.join()
    committed = {tuple(map(str, r)) for r in rows[:2]}  # the state database holds the first two only
    (sealed,) = Spool(tmp_path).seal_orphans(lambda row, batch: tuple(row) in committed)
    assert sealed.read_bytes() == HEADER + encode_rows(rows[:2])
    assert "never committed" in caplog.text


def test_state_store_knows_its_committed_rows(tmp_path):
    from dkt_core.webclient.history import StateStore

    store, spool = StateStore(tmp_path / "state.sqlite"), Spool(tmp_path / "spool")
    row = dict(zip(SEED_COLUMNS, ["u", "i0", "T1", 1, "2020-01-01 00:00:00", "7224"], strict=True))
    store.record(row, ["i0"], lambda: spool.appending([[row[c] for c in SEED_COLUMNS]]))
    assert store.has_row(["u", "i0", "T1", "1", "2020-01-01 00:00:00", "7224"])
    assert not store.has_row(["u", "i0", "T1", "1", "2020-01-01 00:00:00", "722"])
    assert not store.has_row(["u", "i0", "T1", "x", "2020-01-01 00:00:00", "7224"]) and not store.has_row(["u"])
    batch = spool.current.name
    assert store.has_row(["u", "i0", "T1", "1", "2020-01-01 00:00:00", "7224"], batch)
    assert not store.has_row(["u", "i0", "T1", "1", "2020-01-01 00:00:00", "7224"], "2020-01-01_other.csv")


def test_an_orphans_last_row_is_judged_in_its_own_batch(tmp_path):
    """A worker killed between its spool write and its commit; the student's retry lands on another worker
    within the same second, so it is the identical row, committed there. The orphan's copy was never
    acknowledged: it is dropped, and the row reaches S3 once (it did twice when only the row was compared)."""
    from dkt_core.webclient.history import StateStore

    store = StateStore(tmp_path / "state.sqlite")
    row = dict(zip(SEED_COLUMNS, ["u", "i0", "T1", 1, "2020-01-01 00:00:00", "7224"], strict=True))
    p = CTX.Process(target=_write_and_die, args=(tmp_path / "spool", [[row[c] for c in SEED_COLUMNS]], b""))
    p.start(), p.join()  # the dead worker's batch holds the row; its transaction never committed
    retry = Spool(tmp_path / "spool")
    store.record(row, ["i0"], lambda: retry.appending([[row[c] for c in SEED_COLUMNS]]))
    assert retry.seal_orphans(store.has_row) == []  # the orphan held only that row: nothing left to seal
    retry.seal()
    (batch,) = retry.sealed_batches()
    assert batch.read_bytes() == HEADER + encode_rows([[row[c] for c in SEED_COLUMNS]])
