"""The ingestion manifest: which raw objects (key + ETag) each committed run consumed.

Source of truth: one object per committed run, ``manifest/runs/<run>.json``, created with
``If-None-Match: *``. Creating it is the commit point of a run: everything a run writes before it
(curated version, quarantine, archive) is invisible until then, and a run id can commit only once.
``manifest/index.json`` is a compacted cache of all run records, updated after the commit with
compare-and-set; readers merge it with any run record it does not list yet, so a crash between the
commit and the index update loses nothing.

Concurrent writers are serialised by a lease (``manifest/ingest.lock``, created conditionally); a
retry of the same run id takes its own stale lease over, an expired lease of a dead run is taken over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dkt_core.ingest import layout
from dkt_core.ingest.s3ops import PreconditionFailed, get_json, list_objects, put_json

log = logging.getLogger(__name__)


class IngestBusy(RuntimeError):
    """Another run holds the ingest lease; retry later (Airflow retries do)."""


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
    got = get_json(client, bucket, layout.MANIFEST_INDEX_KEY)
    by_key: dict[str, dict[str, Any]] = {}
    if got is not None:
        for rec in got[0].get("runs", []):
            state.runs[rec["run_id"]] = rec
            by_key[layout.manifest_run_key(rec["run_id"])] = rec
    for obj in list_objects(client, bucket, layout.MANIFEST_RUNS_PREFIX):
        if obj["key"] not in by_key:
            rec_got = get_json(client, bucket, obj["key"])
            if rec_got is not None:
                rec = rec_got[0]
                state.runs[rec["run_id"]] = _compact(rec)
    return state


def read_run(client, bucket: str, run_id: str) -> dict[str, Any] | None:
    got = get_json(client, bucket, layout.manifest_run_key(run_id))
    return got[0] if got else None


def commit_run(client, bucket: str, record: dict[str, Any]) -> bool:
    """Create the run record (the commit point). False if this run id had already committed."""
    try:
        put_json(client, bucket, layout.manifest_run_key(record["run_id"]), record, if_absent=True)
    except PreconditionFailed:
        return False
    return True


def update_index(client, bucket: str, state: ManifestState, attempts: int = 5) -> None:
    """Fold ``state`` into manifest/index.json with compare-and-set (merging a concurrent writer)."""
    for _ in range(attempts):
        got = get_json(client, bucket, layout.MANIFEST_INDEX_KEY)
        runs = {r["run_id"]: r for r in (got[0].get("runs", []) if got else [])}
        if all(rid in runs for rid in state.runs):
            return
        runs.update({rid: _compact(rec) for rid, rec in state.runs.items()})
        doc = {
            "schema": 1,
            "updated_at": datetime.now(UTC).isoformat(),
            "latest_version": state.latest_version,
            "runs": sorted(runs.values(), key=lambda r: (r.get("committed_at") or "", r["run_id"])),
        }
        try:
            if got is None:
                put_json(client, bucket, layout.MANIFEST_INDEX_KEY, doc, if_absent=True)
            else:
                put_json(client, bucket, layout.MANIFEST_INDEX_KEY, doc, if_match=got[1])
            return
        except PreconditionFailed:
            time.sleep(0.2)  # someone else updated it: re-read and merge
    # The index is only a cache; readers still see every run record, so this is not fatal.


@contextmanager
def ingest_lease(client, bucket: str, run_id: str, ttl_s: int) -> Iterator[None]:
    """Hold the ingest lease for ``run_id`` for the duration of the block."""
    now = time.time()
    doc = {"run_id": run_id, "acquired_at": now, "expires_at": now + ttl_s}
    try:
        put_json(client, bucket, layout.LOCK_KEY, doc, if_absent=True)
    except PreconditionFailed:
        got = get_json(client, bucket, layout.LOCK_KEY)
        if got is None:  # released between our write and read: try once more
            put_json(client, bucket, layout.LOCK_KEY, doc, if_absent=True)
        else:
            holder, etag = got
            if holder.get("run_id") != run_id and holder.get("expires_at", 0) > now:
                raise IngestBusy(
                    f"run {holder.get('run_id')!r} holds the ingest lease until "
                    f"{datetime.fromtimestamp(holder['expires_at'], UTC).isoformat()}; retry later"
                ) from None
            try:  # our own stale lease (a retry) or an expired one of a dead run
                put_json(client, bucket, layout.LOCK_KEY, doc, if_match=etag)
            except PreconditionFailed:
                raise IngestBusy("another run took the ingest lease at the same moment; retry") from None
    try:
        yield
    finally:
        try:
            got = get_json(client, bucket, layout.LOCK_KEY)
            if got is not None and got[0].get("run_id") == run_id:
                client.delete_object(Bucket=bucket, Key=layout.LOCK_KEY)
        except Exception as err:  # never mask the real error; a retry takes its own lease over
            log.warning("could not release the ingest lease of %s: %s", run_id, err)
