"""Immutable versions of the curated interaction dataset: read, merge, claim, write, LATEST pointer.

A version is ``previous version + new rows``, exact duplicates dropped, sorted per user by time (stable,
so rows with equal timestamps keep their arrival order). Every object of ``curated/v=N/`` is created
conditionally (``If-None-Match: *``), so nothing ever overwrites a version: a writer first claims the
number (``curated/v=N/CLAIM``, naming its run id and fencing token), and a number claimed by an attempt
that died before committing is never overwritten. One exception keeps numbers contiguous in the common
case: a retry of the *same run id* (which fenced the old attempt out by taking its lease) adopts the old
attempt's number when what is already there is byte-identical to what it would write (same sha256);
otherwise it moves on to a new number — version numbers may skip; ``metadata.json`` names the parent.
A version is visible only once a run record commits it (see ``pipeline``).
"""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from dkt_core.data.columns import COLUMNS
from dkt_core.data.normalise import normalise
from dkt_core.ingest import layout
from dkt_core.storage.objects import (
    ConflictExhausted,
    PreconditionFailed,
    compare_and_set,
    get_bytes,
    get_json,
    parquet_bytes,
    put_bytes,
    put_json,
)

log = logging.getLogger(__name__)


class VersionTaken(RuntimeError):
    """A conditional create under curated/v=N/ lost: another attempt owns that version number."""


def read_version(client, bucket: str, version: int) -> pd.DataFrame:
    got = get_bytes(client, bucket, layout.dataset_key(version))
    if got is None:
        raise FileNotFoundError(
            f"curated version {layout.version_name(version)} is committed in the manifest but "
            f"s3://{bucket}/{layout.dataset_key(version)} is missing; restore it from the archive"
        )
    body = got[0]
    del got
    return pd.read_parquet(io.BytesIO(body))


def merge(parent: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """parent + new by the one normalisation rule (``data.normalise``: exact duplicates dropped, the first
    kept; users by first appearance, each user's rows by time, stable), in the parent's column types."""
    frames = [parent[COLUMNS]] if parent is not None and len(parent) else []
    merged, _ = normalise(pd.concat([*frames, new[COLUMNS]], ignore_index=True) if frames else new[COLUMNS])
    del new
    return merged.astype(parent[COLUMNS].dtypes.to_dict()) if frames else merged  # one schema across versions


def claim_version(client, bucket: str, *, parent: int | None, run_id: str, token: str,
                  check=lambda step: None, start: int = 0, attempts: int = 50) -> tuple[int, bool]:
    """Create curated/v=N/CLAIM for the first free N above ``parent`` (and at least ``start``); returns
    (N, adopted). ``adopted``: N was claimed by an earlier attempt of the same run id on the same parent,
    so ``write_version`` may adopt identical content found there. ``check(step)`` runs before each write
    (the lease's fencing check)."""
    n = max(parent or 0, start - 1) + 1
    parent_name = layout.version_name(parent) if parent else None
    for _ in range(attempts):
        check(f"claiming {layout.version_name(n)}")
        try:
            put_json(client, bucket, layout.claim_key(n), {
                "version": layout.version_name(n), "run_id": run_id, "token": token,
                "parent_version": parent_name, "claimed_at": datetime.now(UTC).isoformat()}, if_absent=True)
            return n, False
        except PreconditionFailed:
            pass
        try:
            got = get_json(client, bucket, layout.claim_key(n))
        except ValueError:
            got = None
        claim = got[0] if got and isinstance(got[0], dict) else {}
        if claim.get("run_id") == run_id and claim.get("parent_version") == parent_name:
            return n, True  # an earlier attempt of this run (fenced out: we hold the lease)
        n += 1  # another run's number (an orphan of a dead attempt, or committed): never shared
    raise VersionTaken(f"no free curated version number after {attempts} tries above {layout.version_name(n)}")


def write_version(
    client,
    bucket: str,
    version: int,
    df: pd.DataFrame,
    *,
    parent: int | None,
    run_id: str,
    sources: list[dict[str, Any]],
    check=lambda step: None,
    adopt: bool = False,
) -> dict[str, Any]:
    """Create the dataset and its metadata.json (conditional creates; ``check`` before each); returns
    the metadata. Raises VersionTaken if either already exists (a committed version is never rewritten)
    unless ``adopt`` and the existing objects hold exactly this dataset (same sha256)."""
    body = parquet_bytes(df)
    sha = hashlib.sha256(body).hexdigest()
    meta = {
        "version": layout.version_name(version),
        "parent_version": layout.version_name(parent) if parent else None,
        "rows": int(len(df)),
        "users": int(df["userID"].nunique()),
        "sha256": sha,
        "bytes": len(body),
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(),
        "sources": sources,
        "dataset_key": layout.dataset_key(version),
    }
    taken = VersionTaken(f"s3://{bucket}/{layout.CURATED_PREFIX}{layout.version_name(version)}/ holds other "
                         "content written by another attempt; versions are never overwritten")
    check(f"writing {layout.dataset_key(version)}")
    try:
        put_bytes(client, bucket, layout.dataset_key(version), body, if_absent=True,
                  metadata={"sha256": sha, "run-id": layout.run_slug(run_id)})
    except PreconditionFailed:
        head = client.head_object(Bucket=bucket, Key=layout.dataset_key(version))
        if not adopt or head.get("Metadata", {}).get("sha256") != sha:
            raise taken from None
    del body
    check(f"writing {layout.metadata_key(version)}")
    try:
        put_json(client, bucket, layout.metadata_key(version), meta, if_absent=True)
    except PreconditionFailed:
        existing = get_json(client, bucket, layout.metadata_key(version))
        if not adopt or not existing or not isinstance(existing[0], dict) or existing[0].get("sha256") != sha:
            raise taken from None
        meta = existing[0]  # identical dataset, described by the earlier attempt of this run
    return meta


def read_latest(client, bucket: str) -> tuple[int | None, str | None]:
    """(version, etag) of curated/LATEST; (None, None) when absent. A bad content raises naming it."""
    try:
        got = get_bytes(client, bucket, layout.LATEST_KEY, max_bytes=64)
    except ValueError as err:  # far too long to be a version name
        raise ValueError(f"{err} (it should hold a version name like v=000001)") from None
    if got is None:
        return None, None
    try:
        return layout.parse_version(got[0][:64].decode("ascii", "replace")), got[1]
    except ValueError as err:
        raise ValueError(f"s3://{bucket}/{layout.LATEST_KEY} does not hold a version name ({err}); "
                         "it is repaired by the next ingestion once removed") from None


def set_latest(client, bucket: str, version: int, attempts: int = 10) -> None:
    """Point LATEST at ``version`` unless it already points at that or a newer one (compare-and-set,
    so two writers never move it backwards)."""

    def read() -> tuple[int | None, str | None] | None:
        try:
            return read_latest(client, bucket)
        except ValueError as err:
            log.warning("%s; rewriting it", err)
            return None, client.head_object(Bucket=bucket, Key=layout.LATEST_KEY)["ETag"].strip('"')

    def write(name: str, **condition) -> str:
        return put_bytes(client, bucket, layout.LATEST_KEY, name.encode(), content_type="text/plain", **condition)

    try:
        compare_and_set(read, write, lambda current: None if current is not None and current >= version
                        else layout.version_name(version), what=layout.s3_uri(bucket, layout.LATEST_KEY),
                        attempts=attempts, wait_s=0.05)
    except ConflictExhausted:
        raise RuntimeError(f"s3://{bucket}/{layout.LATEST_KEY} kept changing; the next run repairs it") from None
