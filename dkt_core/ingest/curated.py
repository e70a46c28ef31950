"""Immutable versions of the curated interaction dataset: read, merge, write, LATEST pointer.

A version is ``previous version + new rows``, exact duplicates dropped, sorted per user by time (stable,
so rows with equal timestamps keep their arrival order). Versions are written before the run commits;
an uncommitted version number can only belong to a crashed attempt (the writer holds the ingest lease
and numbers are allocated from committed runs), so rewriting it is safe. Committed ones never change.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from dkt_core.ingest import layout
from dkt_core.ingest.s3ops import get_bytes, put_bytes, put_json

COLUMNS = ["userID", "assessmentItemID", "testId", "answerCode", "Timestamp", "KnowledgeTag"]


def read_version(client, bucket: str, version: int) -> pd.DataFrame:
    got = get_bytes(client, bucket, layout.dataset_key(version))
    if got is None:
        raise FileNotFoundError(
            f"curated version {layout.version_name(version)} is committed in the manifest but "
            f"s3://{bucket}/{layout.dataset_key(version)} is missing; restore it from the archive"
        )
    return pd.read_parquet(io.BytesIO(got[0]))


def merge(parent: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """parent + new, exact duplicates dropped (first kept), sorted per user by time (stable)."""
    new = new[COLUMNS]
    if parent is not None and len(parent):
        new = new.astype(parent[COLUMNS].dtypes.to_dict())  # one schema across versions
        frames = [parent[COLUMNS], new]
    else:
        frames = [new]
    from dkt_core.data.validate import sort_interactions

    merged = pd.concat(frames, ignore_index=True).drop_duplicates(keep="first")
    # Same order as the data contract: users by first appearance, each user's rows by time (stable).
    return sort_interactions(merged.reset_index(drop=True))


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def write_version(
    client,
    bucket: str,
    version: int,
    df: pd.DataFrame,
    *,
    parent: int | None,
    run_id: str,
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the dataset and its metadata.json; returns the metadata."""
    body = to_parquet_bytes(df)
    sha = hashlib.sha256(body).hexdigest()
    put_bytes(client, bucket, layout.dataset_key(version), body, metadata={"sha256": sha, "run-id": run_id})
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
    put_json(client, bucket, layout.metadata_key(version), meta)
    return meta


def read_latest(client, bucket: str) -> int | None:
    got = get_bytes(client, bucket, layout.LATEST_KEY)
    return layout.parse_version(got[0].decode()) if got else None


def set_latest(client, bucket: str, version: int) -> None:
    """Point LATEST at ``version`` unless it already points at that or a newer one."""
    current = read_latest(client, bucket)
    if current is None or current < version:
        put_bytes(client, bucket, layout.LATEST_KEY, layout.version_name(version).encode(),
                  content_type="text/plain")
