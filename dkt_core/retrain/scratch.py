"""Clean-up of the training scratch ``runs/<run>/train/`` (split + features, each member's model).

The fanned-out training (``dkt_core.retrain.training``) stores a full feature copy per run under
``runs/<run>/train/`` so that its tasks can run on any worker and a retry reuses finished work. Two rules
keep the bucket from growing by that copy per run:

- **Released on commit.** Once the run committed what a retry reuses instead — ``runs/<run>/challenger.json``
  and the artifact it names (``models/<model_version>/artifact.tar.gz``, its recorded sha256) — nothing reads
  the scratch any more: every training step checks the challenger record first. ``release_run_scratch``
  deletes it. A run that did not commit keeps its scratch for its retry.
- **Age rule.** ``sweep_stale_scratch`` deletes the scratch of any *other* run whose newest object is older
  than ``DKT_TRAIN_SCRATCH_DAYS`` (``RetrainSettings.train_scratch_days``; 0: never): the leftovers of runs
  that never finished.

The DAG's ``clean_scratch`` task calls ``clean_training_scratch`` (both rules) once the ``ensemble`` task is
done, whether it succeeded or failed. Everything is idempotent: deleting what is gone is a no-op, so a retry
(or a second clean-up) changes nothing. Prefixes come from ``dkt_core.ingest.layout`` only: this run's from
its run id, the others' from a listing of ``runs/`` whose names are checked against ``run_slug``'s pattern
(anything else is skipped and logged, never turned into a key). Record objects (``*.json``, written after
their data) are deleted before the data, so a retry running meanwhile never finds a record whose data is gone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from dkt_core.ingest.layout import (
    ARTIFACT_FILE,
    RUNS_PREFIX,
    challenger_record_key,
    model_key,
    run_slug,
    slug_of_run_prefix,
    train_prefix,
)
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.objects import delete_keys, is_missing, list_objects, list_subprefixes, read_json
from dkt_core.storage.workspace import Workspace
from dkt_core.training.versions import check_model_version

log = logging.getLogger(__name__)

MAX_NAMED = 20  # runs named in a result (the count is always complete)


def committed(run_id: str, *, ws: Workspace) -> str | None:
    """Why the run's scratch must stay (None: the run committed its challenger record and artifact)."""
    from botocore.exceptions import ClientError

    record_key = challenger_record_key(run_id)
    record = read_json(ws.client, ws.bucket, record_key)
    if record is None:
        return f"{ws.uri(record_key)} does not exist: the run has not committed (a retry reuses the scratch)"
    version = check_model_version(record.get("model_version"), source=f"{ws.uri(record_key)} model_version")
    artifact = model_key(version, ARTIFACT_FILE)
    try:
        meta = ws.client.head_object(Bucket=ws.bucket, Key=artifact).get("Metadata") or {}
    except ClientError as err:
        if is_missing(err):
            return f"{ws.uri(artifact)}, named by {ws.uri(record_key)}, does not exist"
        raise
    if record.get("artifact_sha256") and meta.get("sha256") and meta["sha256"] != record["artifact_sha256"]:
        return f"{ws.uri(artifact)} is not the artifact {ws.uri(record_key)} recorded (sha256 differs)"
    return None


def _delete_prefix(prefix: str, ws: Workspace, older_than: datetime | None = None) -> dict[str, int] | None:
    """Delete every object under ``prefix`` (records first); with ``older_than``, only when the newest object
    is older than it (None then: too young, nothing deleted). Counts of objects and bytes deleted."""
    objects = [o for o in list_objects(ws.client, ws.bucket, prefix) if o["key"].startswith(prefix)]
    if older_than is not None and objects and max(o["modified"] for o in objects) >= older_than:
        return None
    records = [o["key"] for o in objects if o["key"].endswith(".json")]
    data = [o["key"] for o in objects if not o["key"].endswith(".json")]
    delete_keys(ws.client, ws.bucket, records)  # first: a record never outlives its data
    delete_keys(ws.client, ws.bucket, data)
    return {"objects": len(objects), "bytes": sum(o["size"] for o in objects)}


def release_run_scratch(run_id: str, *, ws: Workspace) -> dict[str, Any]:
    """Delete ``runs/<run>/train/`` once the run committed (``committed``); else keep it and say why."""
    prefix = train_prefix(run_id)
    why = committed(run_id, ws=ws)
    if why is not None:
        log.info("keeping %s: %s", ws.uri(prefix), why)
        return {"run_id": run_id, "released": False, "kept_because": why, "objects": 0, "bytes": 0}
    gone = _delete_prefix(prefix, ws)
    log.info("released %s: %d objects, %d bytes", ws.uri(prefix), gone["objects"], gone["bytes"])
    return {"run_id": run_id, "released": True, **gone}


def sweep_stale_scratch(max_age_days: int, *, keep_run_id: str | None = None, now: datetime | None = None,
                        ws: Workspace) -> dict[str, Any]:
    """Delete the ``runs/<run>/train/`` of every run but ``keep_run_id`` whose newest object is more than
    ``max_age_days`` days older than ``now`` (default: the current time; 0 days: nothing is swept)."""
    out: dict[str, Any] = {"max_age_days": max_age_days, "runs_swept": 0, "objects": 0, "bytes": 0,
                           "swept": [], "skipped_names": 0}
    if max_age_days <= 0:
        return out
    cutoff = (now or datetime.now(UTC)) - timedelta(days=max_age_days)
    keep = run_slug(keep_run_id) if keep_run_id else None
    for common in list_subprefixes(ws.client, ws.bucket, RUNS_PREFIX):
        try:
            slug = slug_of_run_prefix(common)
        except ValueError as err:  # a name run_slug never makes: not ours to derive a key from
            log.warning("not sweeping %s: %s", ws.uri(common), err)
            out["skipped_names"] += 1
            continue
        if slug == keep:
            continue
        gone = _delete_prefix(train_prefix(slug=slug), ws, older_than=cutoff)
        if gone and gone["objects"]:
            out["runs_swept"] += 1
            out["objects"] += gone["objects"]
            out["bytes"] += gone["bytes"]
            if len(out["swept"]) < MAX_NAMED:
                out["swept"].append(slug)
            log.info("swept %s (newest object older than %d days): %d objects, %d bytes",
                     ws.uri(train_prefix(slug=slug)), max_age_days, gone["objects"], gone["bytes"])
    return out


def clean_training_scratch(run_id: str, *, settings: RetrainSettings, ws: Workspace,
                           now: datetime | None = None) -> dict[str, Any]:
    """The DAG's clean-up step: release this run's scratch if it committed, and sweep other runs' stale
    scratch (``settings.train_scratch_days``). Small dict for XCom: counts and at most ``MAX_NAMED`` names."""
    released = release_run_scratch(run_id, ws=ws)
    swept = sweep_stale_scratch(settings.train_scratch_days, keep_run_id=run_id, now=now, ws=ws)
    return {"run_id": run_id, "released": released, "swept": swept}
