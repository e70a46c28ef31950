"""One ingestion run: new raw objects -> validated -> quarantine / archive -> new curated version.

Order of writes (a crash anywhere before step 5 leaves nothing visible; a retry redoes the run):
1. take the ingest lease (heartbeat-renewed, fencing token); reload the manifest; list objects whose
   (key, ETag) no run consumed
2. stream + validate each (size caps from ``ReadLimits``); rejected rows -> quarantine/<run>/<key>.rejected.csv;
   an object that cannot be used (too big, bomb, corrupt, unparsable, unsafe key, any parsing error) ->
   quarantined whole with ``.reason.json`` and counted consumed: no object can stop ingestion
3. archive a server-side copy of each ingested object -> archive/<run>/<key>
4. claim curated/v=N/CLAIM, create curated/v=N/ (previous version + new rows) and its metadata, all with
   ``If-None-Match: *``: a version is never overwritten
5. create manifest/runs/<run>.json  <- commit point (conditional create: a run id commits once)
6. move curated/LATEST (compare-and-set), update manifest/index.json (both repaired by the next run)
Before every write the attempt checks that it still holds the lease (``Lease.check``); an attempt that
lost it (a retry of its run id took over) stops with ``LeaseLost`` without writing more.

Only infrastructure failures fail the run (``S3Unavailable``: S3 unreachable, timing out, throttling,
5xx), so Airflow retries it. Raw objects are kept where they are (see docs/airflow.md): the manifest says
what was consumed.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dkt_core.ingest import curated, layout
from dkt_core.ingest.errors import S3Unavailable, require_bucket
from dkt_core.ingest.manifest import (
    Lease,
    ManifestState,
    commit_run,
    ingest_lease,
    load_state,
    read_run,
    update_index,
)
from dkt_core.settings import IngestSettings, ReadLimits
from dkt_core.storage.objects import (
    copy_object,
    is_infrastructure_error,
    is_missing,
    is_precondition,
    is_s3_error,
    list_objects,
    put_bytes,
    put_json,
)
from dkt_core.storage.s3 import S3Settings, s3_client
from dkt_core.storage.workspace import Workspace

log = logging.getLogger(__name__)

STATUS_INGESTED = "ingested"
STATUS_NOTHING_NEW = "nothing_new"
MAX_COPY_BYTES = 5 * 1024**3  # S3's limit of one CopyObject
MAX_REASON_CHARS = 4000


_DEFAULTS = IngestSettings()  # a direct construction's values; the edges pass what they loaded (``with_settings``)


@dataclass(frozen=True)
class IngestConfig:
    run_id: str  # the idempotency key: Airflow's run_id
    prefix: str = layout.RAW_PREFIX
    # Lease TTL; must exceed the ingest task's timeout (it only matters when a worker dies: a live run
    # renews its lease every TTL/4). DKT_INGEST_LEASE_TTL_S at the edges (default 3600 s).
    lease_ttl_s: int = _DEFAULTS.lease_ttl_s
    # Listed bytes one run reads (objects in key order, at least one): what is left stays pending for the
    # next run, so a backlog never makes one run hold everything. DKT_INGEST_MAX_RUN_BYTES at the edges (1 GiB).
    max_run_bytes: int = _DEFAULTS.max_run_bytes
    settings: S3Settings | None = None  # where to ingest when ``ingest`` gets no workspace
    limits: ReadLimits = field(default_factory=ReadLimits)  # object and decompressed size caps
    # Called with the name of each step before it runs (fault-injection tests pause or fail runs there).
    hooks: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def with_settings(cls, run_id: str, prefix: str, ingest: IngestSettings, limits: ReadLimits,
                      **kw: Any) -> IngestConfig:
        """The run's config from the settings an edge loaded (``load(IngestSettings)``, ``load(ReadLimits)``)."""
        return cls(run_id=run_id, prefix=prefix, lease_ttl_s=ingest.lease_ttl_s, max_run_bytes=ingest.max_run_bytes,
                   limits=limits, **kw)


@dataclass
class IngestResult:
    """JSON-able summary; this is what goes through XCom and what `dkt ingest --json` prints."""

    status: str  # "ingested" | "nothing_new"
    run_id: str
    reason: str = ""
    bucket: str = ""
    data_version: str | None = None  # newest committed curated version after this run
    parent_version: str | None = None
    data_uri: str | None = None  # s3:// URI of data_version's dataset
    objects: int = 0  # objects consumed (ingested + quarantined)
    objects_ingested: int = 0
    objects_quarantined: int = 0
    objects_pending: int = 0  # new objects left for the next run (over this run's byte budget)
    rows_added: int = 0
    rows_rejected: int = 0
    quarantine_prefix: str | None = None
    manifest_key: str | None = None
    replayed: bool = False  # True when the run had committed before (a rerun / retry)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> IngestResult:
        """From a committed record's result (records written before a field existed lack it)."""
        doc = dict(doc)
        if doc.get("status") == "skipped":
            doc["status"] = STATUS_NOTHING_NEW
        if "dataset_uri" in doc:
            doc.setdefault("data_uri", doc.pop("dataset_uri"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass
class _Consumed:
    frames: list[Any] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    rows_rejected: int = 0
    quarantined: int = 0
    ingested: int = 0


class _GuardedBody(io.RawIOBase):
    """The S3 response body as a file object that remembers any error of the transfer itself, so a
    connection lost mid-object is never mistaken for a corrupt object (whatever the parser turns it into)."""

    def __init__(self, body):
        super().__init__()
        self._body = body
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except Exception as err:
            self.error = err
            raise

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


@dataclass
class _Run:
    client: Any
    bucket: str
    config: IngestConfig
    lease: Lease
    limits: Any

    def hook(self, name: str) -> None:
        if self.config.hooks is not None:
            self.config.hooks(name)

    def step(self, name: str) -> None:
        """Fault-injection hook, then the fencing check: nothing is written by an attempt that lost its lease."""
        self.hook(name)
        self.lease.check(name)


def _this_run(pending: list[dict[str, Any]], limits, budget: int) -> list[dict[str, Any]]:
    """The first pending objects (key order) whose listed sizes fit ``budget``; objects that are not read
    (unsafe key, over the object cap) do not count. Always at least one object."""
    chosen, used = [], 0
    for obj in pending:
        reads = not layout.raw_key_problem(obj["key"]) and obj["size"] <= limits.max_object_bytes
        if reads and chosen and used + obj["size"] > budget:
            break
        chosen.append(obj)
        used += obj["size"] if reads else 0
    return chosen


def pending_objects(client, bucket: str, prefix: str, state: ManifestState) -> list[dict[str, Any]]:
    """Raw objects under ``prefix`` whose (key, ETag) no committed run consumed."""
    consumed = state.consumed
    return [o for o in list_objects(client, bucket, prefix)
            if (o["key"], o["etag"]) not in consumed and not o["key"].endswith("/")]


def _describe(err: BaseException) -> str:
    from dkt_core.data.io import DataFileError

    text = str(err) if isinstance(err, DataFileError) else f"{type(err).__name__}: {err}"
    return text[:MAX_REASON_CHARS]


def _quarantine(run: _Run, obj: dict[str, Any], reason: str, out: _Consumed) -> bool:
    """Copy a whole object to quarantine/<run>/ (server-side) with its reason; False if it vanished or
    changed since the listing (then it is not consumed: a later run sees its new ETag)."""
    key, etag, size = obj["key"], obj["etag"], obj["size"]
    qkey = layout.quarantine_key(run.config.run_id, key)
    copied = False
    if size <= MAX_COPY_BYTES:
        run.step(f"quarantine:{qkey}")
        if copy_object(run.client, run.bucket, key, qkey, src_etag=etag,
                       metadata={"source-etag": etag}) is None:
            log.warning("s3://%s/%s vanished or changed before quarantine; not consumed", run.bucket, qkey)
            return False
        copied = True
    run.step(f"quarantine:{qkey}.reason.json")
    put_json(run.client, run.bucket, qkey + ".reason.json", {
        "key": key, "etag": etag, "size": size, "reason": reason, "run_id": run.config.run_id,
        "copied": copied, "quarantined_at": datetime.now(UTC).isoformat()})
    log.warning("quarantined s3://%s/%s -> %s: %s", run.bucket, key[:200], qkey, reason)
    out.quarantined += 1
    out.sources.append({"key": key, "etag": etag, "size": size, "status": "quarantined", "reason": reason,
                        "quarantine_key": qkey, "rows_read": 0, "rows_valid": 0, "rows_rejected": 0})
    return True


def _ingest_one(run: _Run, obj: dict[str, Any], out: _Consumed) -> None:
    """Validate one object into ``out``; any failure of the object itself quarantines it. Only S3 errors
    (including a transfer that breaks mid-object) propagate."""
    from dkt_core.data.validate import validate_stream

    key, etag, size = obj["key"], obj["etag"], obj["size"]
    problem = layout.raw_key_problem(key)
    if problem:
        _quarantine(run, obj, f"object key not allowed: {problem}", out)
        return
    if size > run.limits.max_object_bytes:
        _quarantine(run, obj, f"object is {size} bytes, over the {run.limits.max_object_bytes}-byte cap "
                              "(DKT_INGEST_MAX_OBJECT_BYTES); split the upload", out)
        return
    run.step(f"read:{key}")
    try:  # exactly the listed version: the manifest records this ETag as consumed
        resp = run.client.get_object(Bucket=run.bucket, Key=key, IfMatch=f'"{etag}"')
    except ClientError as err:
        if is_missing(err) or is_precondition(err):
            log.warning("s3://%s/%s vanished or changed since the listing; not consumed", run.bucket, key)
            return
        raise
    body = _GuardedBody(resp["Body"])
    try:
        result = validate_stream(body, key, limits=run.limits)
    except Exception as err:
        if body.error is not None:
            raise body.error from err  # the transfer broke, not the object: S3 trouble, retry the run
        if is_s3_error(err):
            raise
        if not isinstance(err, _data_file_error()):
            log.warning("unexpected error parsing s3://%s/%s; quarantining it", run.bucket, key, exc_info=True)
        _quarantine(run, obj, _describe(err), out)
        return
    finally:
        body.close()

    qprefix = layout.quarantine_prefix(run.config.run_id)
    if len(result.rejected):
        run.step(f"quarantine:{key}.rejected.csv")
        put_bytes(run.client, run.bucket, qprefix + key + ".rejected.csv",
                  result.rejected.to_csv(index=False).encode(), content_type="text/csv")
    # Archive before commit (server-side copy of the very version validated).
    run.step(f"archive:{key}")
    if copy_object(run.client, run.bucket, key, layout.archive_key(run.config.run_id, key), src_etag=etag,
                   metadata={"source-etag": etag}) is None:
        log.warning("s3://%s/%s changed during ingestion; not consumed (a later run takes its new version)",
                    run.bucket, key)
        return
    out.frames.append(result.valid)
    out.rows_rejected += len(result.rejected)
    out.ingested += 1
    out.sources.append({
        "key": key, "etag": etag, "size": size, "status": "validated", "rows_read": int(result.rows_read),
        "rows_valid": len(result.valid), "rows_rejected": len(result.rejected),
        "duplicates": int(result.duplicates), "reasons": {str(k): int(v) for k, v in result.reasons.items()}})


def _data_file_error() -> type:
    from dkt_core.data.io import DataFileError

    return DataFileError


def _repair(client, bucket: str, state: ManifestState) -> None:
    """Finish step 6 of a run that crashed after its commit."""
    if state.latest_version is not None:
        curated.set_latest(client, bucket, state.latest_version)
    update_index(client, bucket, state)


def _replay(client, bucket: str, run_id: str, state: ManifestState) -> IngestResult:
    record = read_run(client, bucket, run_id)
    if record is None or not isinstance(record.get("result"), dict):
        raise ValueError(f"{layout.s3_uri(bucket, layout.manifest_run_key(run_id))} has no result to replay; "
                         "restore it from a backup")
    _repair(client, bucket, state)
    result = IngestResult.from_record(record["result"])
    result.replayed = True
    return result


def _version_fields(bucket: str, version: int | None) -> dict[str, Any]:
    return {"data_version": layout.version_name(version) if version else None,
            "data_uri": layout.s3_uri(bucket, layout.dataset_key(version)) if version else None}


def ingest(config: IngestConfig, *, ws: Workspace | None = None) -> IngestResult:
    """Ingest every raw object not consumed yet; see the module docstring for the write order.
    ``ws``: the task's workspace (client + bucket, e.g. from the Airflow connection); without it, a client
    for ``config.settings`` (one of the two is required: nothing here reads the environment).

    Raises ``S3Unavailable`` when S3 cannot be reached or throttles (retry the run), ``IngestBusy``
    when another run holds the lease, ``LeaseLost`` when a retry of this run took over.
    """
    layout.check_run_id(config.run_id)
    layout.check_prefix(config.prefix)
    if ws is None:
        if config.settings is None:
            raise ValueError("ingest needs a workspace (ws=) or S3 settings (IngestConfig.settings): load them at "
                             "the edge, e.g. load(S3Settings)")
        ws = Workspace(s3_client(config.settings), config.settings.bucket, Path())
    try:
        return _ingest(ws.client, ws.bucket, config)
    except (BotoCoreError, ClientError) as err:
        if is_infrastructure_error(err):
            raise S3Unavailable(
                f"S3 at {ws.endpoint} is unreachable or throttling ({err}); nothing was "
                "committed: retry the run once S3 answers") from err
        raise


def _ingest(client, bucket: str, config: IngestConfig) -> IngestResult:
    limits = config.limits
    require_bucket(client, bucket)
    base = IngestResult(status=STATUS_NOTHING_NEW, run_id=config.run_id, bucket=bucket)

    state = load_state(client, bucket)
    if config.run_id in state.runs:
        return _replay(client, bucket, config.run_id, state)
    if not pending_objects(client, bucket, config.prefix, state):  # cheap check without the lease
        _repair(client, bucket, state)
        base.reason = f"no new objects under s3://{bucket}/{config.prefix}"
        for k, v in _version_fields(bucket, state.latest_version).items():
            setattr(base, k, v)
        return base

    with ingest_lease(client, bucket, config.run_id, config.lease_ttl_s) as lease:
        run = _Run(client, bucket, config, lease, limits)
        state = load_state(client, bucket)  # authoritative now that we hold the lease
        if config.run_id in state.runs:
            return _replay(client, bucket, config.run_id, state)
        _repair(client, bucket, state)
        pending = pending_objects(client, bucket, config.prefix, state)
        parent = state.latest_version
        for k, v in _version_fields(bucket, parent).items():
            setattr(base, k, v)
        if not pending:
            base.reason = "another run consumed the new objects first"
            return base

        out = _Consumed()
        batch = _this_run(pending, limits, config.max_run_bytes)
        for obj in batch:
            _ingest_one(run, obj, out)
        run.step("merge")
        version, rows_added = _write_version(run, parent, out)

        result = IngestResult(
            status=STATUS_INGESTED if rows_added > 0 else STATUS_NOTHING_NEW,
            run_id=config.run_id,
            reason=("" if rows_added > 0 else "new objects held no new valid rows") + (
                f"{'; ' if rows_added <= 0 else ''}{len(pending) - len(batch)} new objects left for the next run "
                f"(over DKT_INGEST_MAX_RUN_BYTES={config.max_run_bytes})" if len(batch) < len(pending) else ""),
            bucket=bucket,
            parent_version=layout.version_name(parent) if parent else None,
            objects=len(out.sources),
            objects_ingested=out.ingested,
            objects_quarantined=out.quarantined,
            objects_pending=len(pending) - len(batch),
            rows_added=rows_added,
            rows_rejected=out.rows_rejected,
            quarantine_prefix=layout.quarantine_prefix(config.run_id)
            if out.rows_rejected or out.quarantined else None,
            manifest_key=layout.manifest_run_key(config.run_id),
            **_version_fields(bucket, version),
        )
        record = {
            "run_id": config.run_id,
            "attempt": lease.token,
            "version": version,
            "committed_at": datetime.now(UTC).isoformat(),
            "objects": out.sources,
            "result": result.to_dict(),
        }
        run.step("commit")
        if not commit_run(client, bucket, record):
            # Another attempt of this run id committed between our fencing check and our create: its
            # record stands (creates are conditional); what we wrote stays unreferenced.
            log.warning("run %s was committed by another attempt; replaying its result", config.run_id)
            return _replay(client, bucket, config.run_id, load_state(client, bucket))
        state.runs[config.run_id] = record
        run.hook("publish")  # no fencing needed: LATEST moves by compare-and-set, only ever forward
        _repair(client, bucket, state)
        log.info("ingest %s: %s", config.run_id, json.dumps(result.to_dict()))
        return result


def _write_version(run: _Run, parent: int | None, out: _Consumed) -> tuple[int | None, int]:
    """Merge the new rows into the parent and create the next version; (version, rows added)."""
    if not out.frames or not sum(len(f) for f in out.frames):
        return parent, 0
    import pandas as pd

    new = pd.concat(out.frames, ignore_index=True)
    out.frames.clear()  # the per-object frames are not needed once concatenated
    parent_df = curated.read_version(run.client, run.bucket, parent) if parent else None
    parent_rows = len(parent_df) if parent_df is not None else 0
    merged = curated.merge(parent_df, new)
    del new, parent_df
    rows_added = len(merged) - parent_rows
    if rows_added <= 0:
        return parent, 0
    start = 0
    for _ in range(10):
        version, adopt = curated.claim_version(run.client, run.bucket, parent=parent, run_id=run.config.run_id,
                                               token=run.lease.token, check=run.step, start=start)
        try:
            curated.write_version(run.client, run.bucket, version, merged, parent=parent,
                                  run_id=run.config.run_id, sources=out.sources, check=run.step, adopt=adopt)
            return version, rows_added
        except curated.VersionTaken:
            # other content there (an earlier attempt of this run saw other objects, or a folder from
            # before claims existed): move on; a lost lease would have stopped us at the fencing check
            start = version + 1
    raise curated.VersionTaken("could not create a curated version after 10 claims; retry the run")
