"""Key layout of the ingestion area inside the platform bucket (one place, so nothing hard-codes keys).

```
interactions/date=YYYY-MM-DD/<uuid>.csv     raw uploads (web client, users); never deleted by ingestion
archive/<run>/<raw key>                      byte-exact copy of every raw object a run consumed
quarantine/<run>/<raw key>.rejected.csv      rejected rows of one object (+ reason, line)
quarantine/<run>/<raw key>                   a whole unusable object (+ .reason.json next to it)
curated/v=NNNNNN/interactions.parquet        immutable curated dataset versions
curated/v=NNNNNN/metadata.json               rows, users, sources, parent version, sha256
curated/LATEST                               pointer to the newest committed version ("v=NNNNNN")
manifest/runs/<run>.json                     one object per committed run: the commit record
manifest/index.json                          compacted cache of all run records (rebuildable)
manifest/ingest.lock                         lease held while a run writes
```
"""

from __future__ import annotations

import hashlib
import re

RAW_PREFIX = "interactions/"
ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"
CURATED_PREFIX = "curated/"
LATEST_KEY = "curated/LATEST"
MANIFEST_RUNS_PREFIX = "manifest/runs/"
MANIFEST_INDEX_KEY = "manifest/index.json"
LOCK_KEY = "manifest/ingest.lock"
DATASET_FILE = "interactions.parquet"
METADATA_FILE = "metadata.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_VERSION = re.compile(r"^v=(\d{6,})$")


def run_slug(run_id: str) -> str:
    """A key-safe, collision-free name for an Airflow run id (which contains ':' and '+').

    Unsafe characters become '_'; when anything was replaced a short hash of the original keeps two
    different run ids from mapping to the same key.
    """
    if not run_id:
        raise ValueError("run_id must be a non-empty string (it is the idempotency key of a run)")
    slug = _UNSAFE.sub("_", run_id).strip("_") or "run"
    if slug != run_id:
        slug = f"{slug}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"
    return slug


def version_name(version: int) -> str:
    return f"v={version:06d}"


def parse_version(name: str) -> int:
    m = _VERSION.match(name.strip())
    if not m:
        raise ValueError(f"{name!r} is not a curated version name like 'v=000001'")
    return int(m.group(1))


def dataset_key(version: int) -> str:
    return f"{CURATED_PREFIX}{version_name(version)}/{DATASET_FILE}"


def metadata_key(version: int) -> str:
    return f"{CURATED_PREFIX}{version_name(version)}/{METADATA_FILE}"


def manifest_run_key(run_id: str) -> str:
    return f"{MANIFEST_RUNS_PREFIX}{run_slug(run_id)}.json"


def quarantine_prefix(run_id: str) -> str:
    return f"{QUARANTINE_PREFIX}{run_slug(run_id)}/"


def archive_key(run_id: str, raw_key: str) -> str:
    return f"{ARCHIVE_PREFIX}{run_slug(run_id)}/{raw_key}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
