"""The ingestion manifest: which raw objects (key + ETag) each committed run consumed.

Source of truth: one object per committed run, ``manifest/runs/<run>.json``, created with
``If-None-Match: *``. Creating it is the commit point of a run: everything a run writes before it
(curated version, quarantine, archive) is invisible until then, and a run id can commit only once.
``manifest/index.json`` is a compacted cache of all run records, updated after the commit with
compare-and-set; readers merge it with any run record it does not list yet, so a crash between the
commit and the index update loses nothing.

Concurrent writers are serialised by a lease (``manifest/ingest.lock``, created conditionally); a
retry of the same run id takes its own stale lease over, an expired lease of a dead run is taken over.
Each attempt's lease carries a random fencing token. A heartbeat thread renews it (compare-and-set on
its ETag) every quarter TTL while the run writes, so a slow run never loses it by expiry; the writer
checks that the lock still holds its token before each write (:meth:`Lease.check`) and stops with
:class:`LeaseLost` otherwise. Whatever slips through between that check and the write is stopped by the
conditional creates (curated versions, run records): nothing committed is ever overwritten.

Records read back from S3 are checked (run id, version, keys, ETags) before use; a bad one raises
:class:`ManifestCorrupt` naming the object.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dkt_core.ingest import layout
from dkt_core.ingest.errors import IngestError
from dkt_core.storage.objects import (
    ConflictExhausted,
    PreconditionFailed,
    delete_if_match,
    get_json,
    is_infrastructure_error,
    list_objects,
    put_json,
    update_json,
)

log = logging.getLogger(__name__)


class IngestBusy(IngestError):
    """Another run holds the ingest lease; retry later (Airflow retries do)."""


class LeaseLost(IngestError):
    """This attempt no longer holds the ingest lease (a retry or another run took it over): it stopped
    without writing anything more; whatever it wrote before is uncommitted and invisible."""


class ManifestCorrupt(IngestError, ValueError):
    """An object of the manifest (run record, index, lock) does not have the expected form."""


def _checked_record(rec: Any, where: str) -> dict[str, Any]:
    """A run record as read from S3, checked: run id, version, and every (key, ETag) it lists."""
    try:
        if not isinstance(rec, dict):
            raise ValueError("it is not a JSON object")
        layout.check_run_id(rec.get("run_id"))
        version = rec.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)
                                    or not 1 <= version <= 999_999_999):
            raise ValueError(f"version {str(version)[:40]!r} is not a positive integer")
        objects = rec.get("objects")
        if not isinstance(objects, list):
            raise ValueError("'objects' is not a list")
        for o in objects:
            # Keys are only compared with listed keys, never used to build one; check type and size.
            if not isinstance(o, dict) or not isinstance(o.get("key"), str) or len(o["key"]) > 1024:
                raise ValueError("an entry of 'objects' has no valid 'key'")
            layout.check_etag(o.get("etag"))
    except ValueError as err:
        raise ManifestCorrupt(f"{where} is not a valid ingestion run record ({err}); restore it from a "
                              "backup or remove it (its objects will then be ingested again)") from None
    return rec


@dataclass
class ManifestState:
    """Every committed run record, keyed by run id."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def consumed(self) -> set[tuple[str, str]]:
        return {(o["key"], o["etag"]) for r in self.runs.values() for o in r["objects"]}

    @property
    def latest_version(self) -> int | None:
        versions = [r["version"] for r in self.runs.values() if r.get("version") is not None]
        return max(versions) if versions else None


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": record["run_id"],
        "version": record.get("version"),
        "committed_at": record.get("committed_at"),
        "objects": [{"key": o["key"], "etag": o["etag"]} for o in record["objects"]],
    }


def load_state(client, bucket: str) -> ManifestState:
    """All committed runs: the index plus every run record the index does not list yet."""
    state = ManifestState()
    index_uri = layout.s3_uri(bucket, layout.MANIFEST_INDEX_KEY)
    try:
        got = get_json(client, bucket, layout.MANIFEST_INDEX_KEY)
    except ValueError as err:
        raise ManifestCorrupt(f"{err} (the index is a cache: removing it is safe)") from None
    by_key: dict[str, dict[str, Any]] = {}
    if got is not None:
        runs = got[0].get("runs", []) if isinstance(got[0], dict) else None
        if not isinstance(runs, list):
            raise ManifestCorrupt(f"{index_uri} has no list of runs; remove it (it is rebuilt from manifest/runs/)")
        for i, rec in enumerate(runs):
            _checked_record(rec, f"{index_uri} (entry {i})")
            state.runs[rec["run_id"]] = rec
            by_key[layout.manifest_run_key(rec["run_id"])] = rec
    for obj in list_objects(client, bucket, layout.MANIFEST_RUNS_PREFIX):
        if obj["key"] not in by_key:
            where = layout.s3_uri(bucket, obj["key"])
            try:
                rec_got = get_json(client, bucket, obj["key"])
            except ValueError as err:
                raise ManifestCorrupt(str(err)) from None
            if rec_got is not None:
                rec = _checked_record(rec_got[0], where)
                if layout.manifest_run_key(rec["run_id"]) != obj["key"]:
                    raise ManifestCorrupt(f"{where} holds the record of another run id; restore or remove it")
                state.runs[rec["run_id"]] = _compact(rec)
    return state


def read_run(client, bucket: str, run_id: str) -> dict[str, Any] | None:
    key = layout.manifest_run_key(run_id)
    try:
        got = get_json(client, bucket, key)
    except ValueError as err:
        raise ManifestCorrupt(str(err)) from None
    return _checked_record(got[0], layout.s3_uri(bucket, key)) if got else None


def commit_run(client, bucket: str, record: dict[str, Any]) -> bool:
    """Create the run record (the commit point). False if this run id had already committed."""
    try:
        put_json(client, bucket, layout.manifest_run_key(record["run_id"]), record, if_absent=True)
    except PreconditionFailed:
        return False
    return True


def update_index(client, bucket: str, state: ManifestState, attempts: int = 5) -> None:
    """Fold ``state`` into manifest/index.json with compare-and-set (merging a concurrent writer)."""
    def merged(current: Any) -> dict[str, Any] | None:
        runs = {r["run_id"]: r for r in (current.get("runs", []) if current else [])}
        if all(rid in runs for rid in state.runs):
            return None
        runs.update({rid: _compact(rec) for rid, rec in state.runs.items()})
        return {
            "schema": 1,
            "updated_at": datetime.now(UTC).isoformat(),
            "latest_version": state.latest_version,
            "runs": sorted(runs.values(), key=lambda r: (r.get("committed_at") or "", r["run_id"])),
        }

    try:
        update_json(client, bucket, layout.MANIFEST_INDEX_KEY, merged, attempts=attempts)
    except ConflictExhausted:
        pass  # the index is only a cache; readers still see every run record, so this is not fatal


class Lease:
    """The ingest lease of one attempt: acquired conditionally, renewed by a heartbeat, fenced by a token.

    ``check()`` before every write: it raises :class:`LeaseLost` when the heartbeat lost the lease, when it
    could not renew it before expiry (S3 unreachable), or when the lock no longer names this attempt's
    token. ``ttl_s`` must exceed the ingest task's timeout: it only matters when the worker died.
    """

    def __init__(self, client, bucket: str, run_id: str, ttl_s: float, heartbeat_s: float | None = None):
        self.client, self.bucket, self.run_id, self.ttl_s = client, bucket, run_id, float(ttl_s)
        self.token = uuid.uuid4().hex  # fencing token of this attempt
        self.heartbeat_s = heartbeat_s or max(0.2, min(self.ttl_s / 4, 300.0))
        self.etag: str | None = None
        self.expires_at = self.acquired_at = 0.0
        self.lost: str | None = None  # why the lease was lost, once it is
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _doc(self) -> dict[str, Any]:
        now = time.time()
        return {"run_id": self.run_id, "token": self.token, "acquired_at": self.acquired_at, "renewed_at": now,
                "expires_at": now + self.ttl_s}

    def acquire(self) -> Lease:
        self.acquired_at = time.time()
        doc = self._doc()
        for _ in range(5):  # a takeover can race the old attempt's heartbeat: re-read and try again
            try:
                self.etag = put_json(self.client, self.bucket, layout.LOCK_KEY, doc, if_absent=True)
                break
            except PreconditionFailed:
                pass
            got = self._read_lock()
            if got is None:  # released between our write and read: try again
                continue
            holder, etag = got
            if holder["run_id"] != self.run_id and holder["expires_at"] > time.time():
                raise IngestBusy(
                    f"run {holder['run_id']!r} holds the ingest lease until "
                    f"{datetime.fromtimestamp(holder['expires_at'], UTC).isoformat()}; retry later")
            try:  # our own run's stale lease (a retry: the old attempt is fenced out) or an expired one
                self.etag = put_json(self.client, self.bucket, layout.LOCK_KEY, doc, if_match=etag)
                break
            except PreconditionFailed:
                continue  # renewed or taken meanwhile: look again
        else:
            raise IngestBusy("the ingest lease kept changing hands while this run tried to take it; retry")
        self.expires_at = doc["expires_at"]
        self._thread = threading.Thread(target=self._heartbeat, name=f"ingest-lease-{self.token[:8]}", daemon=True)
        self._thread.start()
        return self

    def _read_lock(self) -> tuple[dict[str, Any], str] | None:
        where = layout.s3_uri(self.bucket, layout.LOCK_KEY)
        try:
            got = get_json(self.client, self.bucket, layout.LOCK_KEY)
        except ValueError:
            got = ({}, "")
        if got is None:
            return None
        doc = got[0]
        try:
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            layout.check_run_id(doc.get("run_id"))
            if not isinstance(doc.get("expires_at"), (int, float)) or isinstance(doc.get("expires_at"), bool):
                raise ValueError("no numeric expires_at")
        except ValueError as err:
            raise ManifestCorrupt(f"{where} is not an ingest lease ({err}); delete it once no ingestion runs") from None
        return doc, got[1]

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._mutex:
                if self._stop.is_set() or self.lost:
                    return
                doc = self._doc()
                try:
                    self.etag = put_json(self.client, self.bucket, layout.LOCK_KEY, doc, if_match=self.etag)
                    self.expires_at = doc["expires_at"]
                except PreconditionFailed:
                    self.lost = "another attempt took the ingest lease over"
                    return
                except ClientError as err:
                    if is_infrastructure_error(err):
                        log.warning("ingest lease of %s not renewed (will retry): %s", self.run_id, err)
                        continue
                    self.lost = f"the ingest lease could not be renewed ({err})"  # e.g. deleted: 404
                    return
                except Exception as err:  # S3 unreachable: keep trying until expiry, check() stops the writer
                    log.warning("ingest lease of %s not renewed (will retry): %s", self.run_id, err)

    def check(self, step: str = "") -> None:
        """Raise LeaseLost unless this attempt still holds the lease (read from S3, not assumed)."""
        where = f" before {step}" if step else ""
        if self.lost:
            raise LeaseLost(f"run {self.run_id!r} stopped{where}: {self.lost}; nothing more was written")
        if time.time() >= self.expires_at:
            self.lost = "its lease expired without renewal (S3 unreachable?)"
            raise LeaseLost(f"run {self.run_id!r} stopped{where}: {self.lost}; nothing more was written")
        got = self._read_lock()
        if got is None or got[0].get("token") != self.token:
            holder = got[0]["run_id"] if got else "nobody"
            self.lost = f"the ingest lease is now held by {holder!r} (another attempt took it over)"
            raise LeaseLost(f"run {self.run_id!r} stopped{where}: {self.lost}; nothing more was written")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._mutex:
            if self.lost or self.etag is None:
                return
            try:  # conditional: never deletes a lease another attempt took over meanwhile
                delete_if_match(self.client, self.bucket, layout.LOCK_KEY, self.etag)
            except Exception as err:  # never mask the real error; a retry takes its own lease over
                log.warning("could not release the ingest lease of %s: %s", self.run_id, err)


@contextmanager
def ingest_lease(client, bucket: str, run_id: str, ttl_s: float, heartbeat_s: float | None = None) -> Iterator[Lease]:
    """Hold the ingest lease for ``run_id`` for the duration of the block (renewed by a heartbeat)."""
    lease = Lease(client, bucket, run_id, ttl_s, heartbeat_s).acquire()
    try:
        yield lease
    finally:
        lease.release()
