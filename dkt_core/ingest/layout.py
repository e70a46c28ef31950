"""Key layout of the platform bucket: the one place that builds keys, so nothing hard-codes them.

Ingestion's area:
```
interactions/date=YYYY-MM-DD/<name>.csv     raw uploads (web client, demo, dkt seed: ``raw_key``); never
                                             deleted by ingestion
archive/<run>/<raw key>                      byte-exact copy of every raw object a run consumed
quarantine/<run>/<raw key>.rejected.csv      rejected rows of one object (+ reason, line)
quarantine/<run>/<raw key>                   a whole unusable object (+ .reason.json next to it)
quarantine/<run>/unsafe-keys/<sha256>        an object whose key is not allowed (+ .reason.json)
curated/v=NNNNNN/interactions.parquet        immutable curated dataset versions
curated/v=NNNNNN/metadata.json               rows, users, sources, parent version, sha256
curated/v=NNNNNN/CLAIM                       which run attempt owns version N (created conditionally)
curated/LATEST                               pointer to the newest committed version ("v=NNNNNN")
manifest/runs/<run>.json                     one object per committed run: the commit record
manifest/index.json                          compacted cache of all run records (rebuildable)
manifest/ingest.lock                         lease held while a run writes
```
The training side:
```
splits/v=NNNNNN/train.parquet        rows of the train users of a curated version
splits/v=NNNNNN/holdout.parquet      rows of the fixed hold-out users (they never train)
splits/v=NNNNNN/split.json           counts, fraction, salt (written last: marks a complete split)
splits/v=NNNNNN/new_since_v=MMMMMM.parquet  which rows v=N adds to v=M, the version last trained on (the
                                     minimum batch computes it once; live evaluation and the report read it)
runs/<run>/challenger.json           what a run trained (a retry reuses it instead of retraining); kept
runs/<run>/train/prepared.tar.gz     the run's training scratch (``train_key``): split + fitted features once,
runs/<run>/train/prepared.json       its record (written after the tarball: marks it done),
runs/<run>/train/members/<model>.tar.gz  each member's model + validation predictions (+ ``.json`` record).
                                     Deleted once the run committed (challenger.json + its artifact exist);
                                     a run that failed keeps it for its retry until the age rule
                                     (DKT_TRAIN_SCRATCH_DAYS after its newest object) removes it
                                     (``dkt_core.retrain.scratch``)
models/<model_version>/artifact.tar.gz   the trained artifact directory
models/<model_version>/evaluation.json   challenger + champion metrics on the same hold-out
models/<model_version>/holdout_predictions.parquet
models/<model_version>/report.html (+ report.json, roc.png, calibration.png, live_auc.png)
models/champion.json                 the alias: which model serves (written only after a successful rollout)
models/last_trained.json             the newest training: data version, model version, run (the minimum batch
                                     counts the rows added since its data version)
reports/live_auc.json                live AUC of the serving champion per data version
```
Every value read back from S3 (version names, run ids, raw keys, ETags) is checked against its pattern
here before anything builds a key from it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime

from dkt_core.storage.objects import (
    s3_uri as s3_uri,  # one URI rule (re-exported for the key builders' callers)
)
from dkt_core.training.versions import check_model_version

RAW_PREFIX = "interactions/"
ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"
CURATED_PREFIX = "curated/"
LATEST_KEY = "curated/LATEST"
MANIFEST_RUNS_PREFIX = "manifest/runs/"
MANIFEST_INDEX_KEY = "manifest/index.json"
LOCK_KEY = "manifest/ingest.lock"
UNSAFE_KEYS_DIR = "unsafe-keys/"
DATASET_FILE = "interactions.parquet"
METADATA_FILE = "metadata.json"
CLAIM_FILE = "CLAIM"
RUNS_PREFIX = "runs/"
TRAIN_DIR = "train/"
MODELS_PREFIX = "models/"
CHAMPION_KEY = "models/champion.json"
LAST_TRAINED_KEY = "models/last_trained.json"
LIVE_AUC_KEY = "reports/live_auc.json"
ARTIFACT_FILE = "artifact.tar.gz"
SPLIT_PARTS = ("train.parquet", "holdout.parquet", "split.json")
INTERNAL_PREFIXES = (ARCHIVE_PREFIX, QUARANTINE_PREFIX, CURATED_PREFIX, "manifest/")
MAX_RAW_KEY_LEN = 512  # leaves room for "quarantine/<run>/" + ".reason.json" under S3's 1024 bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_VERSION = re.compile(r"^v=(\d{6,9})$")
# A raw key: '/'-separated segments of letters, digits and ._=+- (no segment starts with '.': no '.',
# '..' or hidden names), no empty segment. Anything else (spaces, quotes, '$', unicode, '//') is quarantined
# under a hashed name, never used to derive a key.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._=+-]*"
_SAFE_KEY = re.compile(rf"^(?:{_SEGMENT}/)*{_SEGMENT}$")
_SAFE_PREFIX = re.compile(rf"^(?:{_SEGMENT}/)*(?:{_SEGMENT})?$")
# Airflow's run ids (manual__2026-01-02T03:04:05.123456+00:00, scheduled__..., asset_triggered__...)
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.~:+@=-]{0,249}$")
_ETAG = re.compile(r"^[A-Za-z0-9-]{1,80}$")
# What ``run_slug`` produces: letters, digits and ._=- (a '.'-only or '..'-containing name is refused).
_SLUG = re.compile(r"^[A-Za-z0-9._=-]{1,300}$")


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
    m = _VERSION.match(name.strip()) if isinstance(name, str) else None
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"{str(name)[:80]!r} is not a curated version name like 'v=000001'")
    return int(m.group(1))


def raw_key_problem(key: str) -> str | None:
    """Why ``key`` (from a listing) may not be used to derive other keys; None when it is safe."""
    if not isinstance(key, str) or not key:
        return "the key is empty"
    if len(key.encode()) > MAX_RAW_KEY_LEN:
        return f"the key is longer than {MAX_RAW_KEY_LEN} bytes"
    if ".." in key:
        return "the key contains '..'"
    if not _SAFE_KEY.match(key):
        return ("the key has characters other than letters, digits and ._=+- in '/'-separated names "
                "(or an empty name, or a name starting with '.')")
    return None


def check_prefix(prefix: str) -> str:
    """The raw prefix to ingest from: safe characters, and not one of ingestion's own areas."""
    if not isinstance(prefix, str) or not prefix or ".." in prefix or not _SAFE_PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} is not allowed: use '/'-separated names of letters, digits "
                         "and ._=+-, e.g. 'interactions/'")
    if prefix.startswith(INTERNAL_PREFIXES) or any(p.startswith(prefix) for p in INTERNAL_PREFIXES):
        raise ValueError(f"prefix {prefix!r} overlaps ingestion's own areas ({', '.join(INTERNAL_PREFIXES)}); "
                         "use the raw upload prefix, e.g. 'interactions/'")
    return prefix


def check_run_id(run_id: str) -> str:
    """A run id (from the CLI, Airflow, or a manifest record read back from S3) matches its pattern."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(f"run id {str(run_id)[:80]!r} is not allowed: up to 250 letters, digits and "
                         "_.~:+@=- starting with a letter or digit")
    return run_id


def check_etag(etag: str) -> str:
    if not isinstance(etag, str) or not _ETAG.match(etag):
        raise ValueError(f"ETag {str(etag)[:80]!r} is not an S3 ETag")
    return etag


def unsafe_key_name(key: str) -> str:
    """A safe, stable name for an object whose key may not be used to derive keys."""
    return UNSAFE_KEYS_DIR + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def dataset_key(version: int) -> str:
    return f"{CURATED_PREFIX}{version_name(version)}/{DATASET_FILE}"


def metadata_key(version: int) -> str:
    return f"{CURATED_PREFIX}{version_name(version)}/{METADATA_FILE}"


def claim_key(version: int) -> str:
    return f"{CURATED_PREFIX}{version_name(version)}/{CLAIM_FILE}"


def manifest_run_key(run_id: str) -> str:
    return f"{MANIFEST_RUNS_PREFIX}{run_slug(run_id)}.json"


def quarantine_prefix(run_id: str) -> str:
    return f"{QUARANTINE_PREFIX}{run_slug(run_id)}/"


def archive_key(run_id: str, raw_key: str) -> str:
    if raw_key_problem(raw_key):  # callers quarantine such objects; never derive a key from them
        raise ValueError(f"refusing to derive an archive key from the unsafe key {raw_key[:80]!r}")
    return f"{ARCHIVE_PREFIX}{run_slug(run_id)}/{raw_key}"


def quarantine_key(run_id: str, raw_key: str) -> str:
    """Where a whole object is quarantined: its own key when safe, else a hashed name."""
    name = unsafe_key_name(raw_key) if raw_key_problem(raw_key) else raw_key
    return quarantine_prefix(run_id) + name



def raw_key(name: str, *, day: str | date | None = None, prefix: str = RAW_PREFIX) -> str:
    """Where an upload goes: ``<prefix>date=<day>/<name>`` (day: a date, ``YYYY-MM-DD`` or a label such as
    ``seed``; default today, UTC). The web client's flusher, the demo and ``dkt seed`` all build raw keys
    here; the result must be a key ingestion accepts (``raw_key_problem``), else ValueError."""
    day = day or datetime.now(UTC).date()
    key = f"{check_prefix(prefix)}date={day.isoformat() if isinstance(day, date) else day}/{name}"
    problem = raw_key_problem(key)
    if problem:
        raise ValueError(f"cannot upload as {key[:80]!r}: {problem}")
    return key


def split_key(version: int, part: str) -> str:
    if part not in SPLIT_PARTS:
        raise ValueError(f"unknown split part {part!r}")
    return f"splits/{version_name(version)}/{part}"


def new_rows_key(version: int, base: int | None) -> str:
    """Which rows of curated ``version`` its ``base`` version lacks (one bool per row, in row order)."""
    return f"splits/{version_name(version)}/new_since_{version_name(base) if base else 'nothing'}.parquet"


def challenger_record_key(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_slug(run_id)}/challenger.json"


def check_run_slug(slug: str) -> str:
    """A run's key name (``run_slug``'s output, e.g. read back from a listing of ``runs/``) matches its pattern."""
    if not isinstance(slug, str) or not _SLUG.match(slug) or ".." in slug or slug.strip(".") == "":
        raise ValueError(f"run key name {str(slug)[:80]!r} is not one run_slug makes (letters, digits and ._=-)")
    return slug


def train_prefix(run_id: str | None = None, *, slug: str | None = None) -> str:
    """``runs/<run>/train/``: the run's training scratch, from its run id or from a checked slug that a
    listing of ``runs/`` returned (exactly one of the two)."""
    if (run_id is None) == (slug is None):
        raise ValueError("give either run_id or slug")
    return f"{RUNS_PREFIX}{run_slug(run_id) if run_id is not None else check_run_slug(slug)}/{TRAIN_DIR}"


def slug_of_run_prefix(prefix: str) -> str:
    """The checked slug of a common prefix ``runs/<slug>/`` from a delimited listing of ``runs/`` (ValueError
    for anything else: such a name never becomes a key to delete)."""
    if not isinstance(prefix, str) or not prefix.startswith(RUNS_PREFIX) or not prefix.endswith("/"):
        raise ValueError(f"{str(prefix)[:80]!r} is not a run prefix 'runs/<run>/'")
    return check_run_slug(prefix[len(RUNS_PREFIX):-1])


def train_key(run_id: str, name: str) -> str:
    """An object of the run's training scratch: ``runs/<run>/train/<name>`` (``name`` a safe relative key,
    e.g. ``prepared.json`` or ``members/lgbm.tar.gz``)."""
    if raw_key_problem(name):
        raise ValueError(f"refusing to build a training key from {name[:80]!r}: {raw_key_problem(name)}")
    return train_prefix(run_id) + name


def model_key(model_version: str, name: str) -> str:
    check_model_version(model_version)  # a value read back from S3 never becomes another key
    return f"{MODELS_PREFIX}{model_version}/{name}"
