"""One ingestion run: new raw objects -> validated -> quarantine / archive -> new curated version.

Order of writes (a crash anywhere before step 5 leaves nothing visible; a retry redoes the run):
1. take the ingest lease; reload the manifest; list objects whose (key, ETag) no run consumed
2. download + validate each; rejected rows (or a whole unusable object) -> quarantine/<run>/
3. archive a byte-exact copy of each consumed object -> archive/<run>/<key> (S3 checks Content-MD5)
4. write curated/v=N/ (previous version + new rows) and its metadata
5. create manifest/runs/<run>.json  <- commit point (conditional create: a run id commits once)
6. move curated/LATEST, update manifest/index.json (both repaired by the next run if this crashes)
Raw objects are kept where they are (see docs/airflow.md): the manifest says what was consumed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dkt_core.ingest import curated, layout
from dkt_core.ingest.manifest import (
    ManifestState,
    commit_run,
    ingest_lease,
    load_state,
    read_run,
    update_index,
)
from dkt_core.ingest.s3ops import get_bytes, list_objects, put_bytes, put_json, require_bucket
from dkt_core.storage.s3 import S3Settings, s3_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    run_id: str  # the idempotency key: Airflow's run_id
    prefix: str = layout.RAW_PREFIX
    lease_ttl_s: int = 3600
    settings: S3Settings | None = None  # default: from the environment


@dataclass
class IngestResult:
    """JSON-able summary; this is what goes through XCom."""

    status: str  # "ingested" | "skipped"
    run_id: str
    reason: str = ""
    bucket: str = ""
    data_version: str | None = None  # newest committed curated version after this run
    parent_version: str | None = None
    dataset_uri: str | None = None
    objects: int = 0
    rows_added: int = 0
    rows_rejected: int = 0
    objects_quarantined: int = 0
    quarantine_prefix: str | None = None
    manifest_key: str | None = None
    replayed: bool = False  # True when the run had committed before (a rerun / retry)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Consumed:
    frames: list[Any] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    rows_rejected: int = 0
    quarantined: int = 0


def pending_objects(client, bucket: str, prefix: str, state: ManifestState) -> list[dict[str, Any]]:
    """Raw objects under ``prefix`` whose (key, ETag) no committed run consumed."""
    consumed = state.consumed
    return [o for o in list_objects(client, bucket, prefix)
            if (o["key"], o["etag"]) not in consumed and not o["key"].endswith("/")]


def _validate_one(client, bucket: str, run_id: str, obj: dict[str, Any], out: _Consumed) -> None:
    from dkt_core.data.io import DataFileError
    from dkt_core.data.validate import validate_bytes

    got = get_bytes(client, bucket, obj["key"])
    if got is None:  # deleted since the listing: nothing to consume, nothing skipped
        log.warning("s3://%s/%s vanished before download; not consumed", bucket, obj["key"])
        return
    body, etag = got  # the ETag of the bytes we actually read is what the manifest records
    source = {"key": obj["key"], "etag": etag, "size": len(body)}
    qprefix = layout.quarantine_prefix(run_id)
    try:
        res = validate_bytes(body, obj["key"])
    except DataFileError as err:
        put_bytes(client, bucket, qprefix + obj["key"], body)
        put_json(client, bucket, qprefix + obj["key"] + ".reason.json", {"key": obj["key"], "etag": etag,
                                                                           "reason": str(err)})
        out.quarantined += 1
        source.update(status="quarantined", reason=str(err), rows_read=0, rows_valid=0, rows_rejected=0)
    else:
        if len(res.rejected):
            put_bytes(client, bucket, qprefix + obj["key"] + ".rejected.csv",
                      res.rejected.to_csv(index=False).encode(), content_type="text/csv")
        out.frames.append(res.valid)
        out.rows_rejected += len(res.rejected)
        source.update(status="validated", rows_read=int(res.rows_read), rows_valid=len(res.valid),
                      rows_rejected=len(res.rejected), duplicates=int(res.duplicates),
                      reasons={str(k): int(v) for k, v in res.reasons.items()})
    # Archive before commit: S3 verifies the copy through Content-MD5 of the bytes we validated.
    put_bytes(client, bucket, layout.archive_key(run_id, obj["key"]), body, metadata={"source-etag": etag})
    out.sources.append(source)


def _repair(client, bucket: str, state: ManifestState) -> None:
    """Finish steps 6 of a run that crashed after its commit."""
    if state.latest_version is not None:
        curated.set_latest(client, bucket, state.latest_version)
    update_index(client, bucket, state)


def _replay(client, bucket: str, run_id: str, state: ManifestState) -> IngestResult:
    record = read_run(client, bucket, run_id)
    assert record is not None
    _repair(client, bucket, state)
    result = IngestResult(**record["result"])
    result.replayed = True
    return result


def ingest(config: IngestConfig) -> IngestResult:
    """Ingest every raw object not consumed yet; see the module docstring for the write order."""
    settings = config.settings or S3Settings.from_env()
    client = s3_client(settings)
    bucket = settings.bucket
    require_bucket(client, bucket)
    base = IngestResult(status="skipped", run_id=config.run_id, bucket=bucket)

    state = load_state(client, bucket)
    if config.run_id in state.runs:
        return _replay(client, bucket, config.run_id, state)
    if not pending_objects(client, bucket, config.prefix, state):  # cheap check without the lease
        _repair(client, bucket, state)
        base.reason = f"no new objects under s3://{bucket}/{config.prefix}"
        base.data_version = layout.version_name(state.latest_version) if state.latest_version else None
        return base

    with ingest_lease(client, bucket, config.run_id, config.lease_ttl_s):
        state = load_state(client, bucket)  # authoritative now that we hold the lease
        if config.run_id in state.runs:
            return _replay(client, bucket, config.run_id, state)
        _repair(client, bucket, state)
        pending = pending_objects(client, bucket, config.prefix, state)
        parent = state.latest_version
        base.data_version = layout.version_name(parent) if parent else None
        if not pending:
            base.reason = "another run consumed the new objects first"
            return base

        out = _Consumed()
        for obj in pending:
            _validate_one(client, bucket, config.run_id, obj, out)

        import pandas as pd

        parent_df = curated.read_version(client, bucket, parent) if parent else None
        new = pd.concat(out.frames, ignore_index=True) if out.frames else None
        merged = curated.merge(parent_df, new) if new is not None and len(new) else parent_df
        rows_added = (len(merged) if merged is not None else 0) - (len(parent_df) if parent_df is not None else 0)

        version = parent
        if rows_added > 0:
            version = (parent or 0) + 1
            curated.write_version(client, bucket, version, merged, parent=parent, run_id=config.run_id,
                                  sources=out.sources)
        result = IngestResult(
            status="ingested" if rows_added > 0 else "skipped",
            run_id=config.run_id,
            reason="" if rows_added > 0 else "new objects held no new valid rows",
            bucket=bucket,
            data_version=layout.version_name(version) if version else None,
            parent_version=layout.version_name(parent) if parent else None,
            dataset_uri=layout.s3_uri(bucket, layout.dataset_key(version)) if version else None,
            objects=len(out.sources),
            rows_added=rows_added,
            rows_rejected=out.rows_rejected,
            objects_quarantined=out.quarantined,
            quarantine_prefix=layout.quarantine_prefix(config.run_id)
            if out.rows_rejected or out.quarantined else None,
            manifest_key=layout.manifest_run_key(config.run_id),
        )
        record = {
            "run_id": config.run_id,
            "version": version,
            "committed_at": datetime.now(UTC).isoformat(),
            "objects": out.sources,
            "result": result.to_dict(),
        }
        if not commit_run(client, bucket, record):  # cannot happen under the lease; be explicit anyway
            raise RuntimeError(f"run {config.run_id!r} committed concurrently; rerun to replay it")
        state.runs[config.run_id] = record
        _repair(client, bucket, state)
        log.info("ingest %s: %s", config.run_id, json.dumps(result.to_dict()))
        return result
