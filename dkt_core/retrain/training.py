"""Train the challenger on the train users of a curated version and store the artifact in S3.

Three steps, one Airflow task each (``dkt_core.training.trainer`` does the work, this module moves it
through the bucket under ``runs/<run>/train/``):

1. ``prepare_training`` — split + features fit once → ``prepared.tar.gz``; returns one small job per model.
2. ``train_run_member`` — one model (a mapped task per model; any worker) → ``members/<model>.tar.gz``
   with its validation predictions; returns its validation AUC (with n) and time.
3. ``assemble_challenger`` — soft-vote weights from the members' validation predictions → the one artifact
   ``models/<model_version>/artifact.tar.gz``. It uses the members that finished: a member whose task
   kept failing is left out (named in ``members_failed``); with none, it fails.

Every object is written before the small JSON record that marks it done, so a retry reuses finished work
(``runs/<run>/challenger.json`` for the whole training). Once that record and its artifact exist, the run's
``runs/<run>/train/`` is deleted (``dkt_core.retrain.scratch``: the DAG's ``clean_scratch`` task). Keys come from the run id and the checked model
name, never from XCom; tarballs are checked against their recorded sha256 before they are extracted.
``train_challenger`` runs the three in one call.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.ingest.layout import ARTIFACT_FILE, challenger_record_key, model_key, train_key
from dkt_core.packaging.store import artifact_models
from dkt_core.retrain.artifacts import cache_local_artifact, upload_artifact, verify_sha256
from dkt_core.retrain.batch import record_training
from dkt_core.storage.objects import get_bytes, read_json, read_parquet, write_json
from dkt_core.storage.workspace import Workspace
from dkt_core.training.versions import check_model_version

log = logging.getLogger(__name__)


class NoMemberTrained(ValueError):
    """Every member's task failed: nothing to assemble (a retry of the ensemble cannot change that)."""


def window(frame: pd.DataFrame, days: int | None) -> pd.DataFrame:
    """Rows of the last ``days`` days before the newest timestamp (all rows when None)."""
    if not days:
        return frame
    if days < 1:
        raise ValueError(f"training_window_days must be >= 1, got {days}")
    cutoff = frame["Timestamp"].max() - pd.Timedelta(days=days)
    return frame[frame["Timestamp"] >= cutoff].reset_index(drop=True)


def _member_key(run_id: str, model: str, suffix: str) -> str:
    from dkt_core.models import get_model_class

    get_model_class(model)  # a registered name (ValueError otherwise): never an arbitrary key part
    return train_key(run_id, f"members/{model}{suffix}")


def _reused(run_id: str, ws: Workspace) -> dict[str, Any] | None:
    """The run's finished training (challenger record), its version checked, or None."""
    done = read_json(ws.client, ws.bucket, challenger_record_key(run_id))
    if done is not None:
        check_model_version(done.get("model_version"), source=f"{challenger_record_key(run_id)} model_version")
    return done


def prepare_training(run_id: str, data_version: str, train_uri: str, models: list[str], *,
                     model_options: dict[str, dict[str, Any]] | None = None,
                     training_window_days: int | None = None, seed: int = 0,
                     ws: Workspace) -> list[dict[str, Any]]:
    """Step 1: fit the split and features once for the run; one job (run id, model, prepared sha256) per
    model in ``models`` order."""
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import prepare

    jobs = [{"run_id": run_id, "model": m} for m in models]
    if _reused(run_id, ws) is not None:
        log.info("run %s already trained its challenger; nothing to prepare", run_id)
        return [{**j, "reused": True} for j in jobs]
    record_key = train_key(run_id, "prepared.json")
    record = read_json(ws.client, ws.bucket, record_key)
    if record is None:
        config = TrainConfig(models=list(models), seed=seed, model_options=model_options or {},
                             data_version=data_version)
        frame = window(read_parquet(ws.client, train_uri), training_window_days)
        if frame.empty:
            raise ValueError(f"no training rows left after the {training_window_days}-day window; widen it")
        with _workdir(ws) as work:
            prepared = prepare(frame, config)
            uri, sha256 = upload_artifact(ws.client, ws.bucket, train_key(run_id, "prepared.tar.gz"),
                                          prepared.save(work / "prepared"))
        record = {"run_id": run_id, "data_version": data_version, "models": list(models), "uri": uri,
                  "sha256": sha256, "train_rows": int(len(frame)), "training_window_days": training_window_days,
                  "prepare_seconds": round(prepared.seconds, 2)}
        write_json(ws.client, ws.bucket, record_key, record)  # after the upload: marks it done
        log.info("prepared %d rows for %s -> %s", len(frame), ", ".join(models), uri)
    return [{**j, "prepared_sha256": record["sha256"], "reused": False} for j in jobs]


def train_run_member(run_id: str, model: str, *, ws: Workspace) -> dict[str, Any]:
    """Step 2: train ``model`` on the run's prepared set → ``members/<model>.tar.gz``; returns the model, its
    validation AUC with n, its time and the tarball's sha256 (a retry returns the finished record)."""
    from dkt_core.evaluation.metrics import evaluate_predictions
    from dkt_core.training.trainer import Prepared, train_member

    record_key = _member_key(run_id, model, ".json")
    if _reused(run_id, ws) is not None:
        return {"model": model, "reused": True, "status": "the run's challenger was trained already"}
    done = read_json(ws.client, ws.bucket, record_key)
    if done is not None:
        log.info("member %s of run %s trained already; reusing it", model, run_id)
        return {**done, "reused": True}
    with _workdir(ws) as work:
        prepared = Prepared.load(_fetch_prepared(run_id, ws, work))
        member = train_member(model, prepared, progress=False)
        pred, valid = member.valid_pred, prepared.valid
        scores = evaluate_predictions(valid[USER].to_numpy(), valid[LABEL].to_numpy(), pred, n_boot=0)
        uri, sha256 = upload_artifact(ws.client, ws.bucket, _member_key(run_id, model, ".tar.gz"),
                                      member.save(work / "member"))
    record = {"run_id": run_id, "model": model, "uri": uri, "sha256": sha256,
              "valid_auc": scores["auc_all"], "n_valid_rows": scores["n_rows"], "n_valid_users": scores["n_users"],
              "train_seconds": round(member.seconds, 2)}
    write_json(ws.client, ws.bucket, record_key, record)  # after the upload: marks it done
    log.info("member %s: validation AUC %.4f (n=%d rows, %d users) in %.1fs", model, record["valid_auc"],
             record["n_valid_rows"], record["n_valid_users"], record["train_seconds"])
    return {**record, "reused": False}


def assemble_challenger(run_id: str, models: list[str], *, ws: Workspace) -> dict[str, Any]:
    """Step 3: the one artifact from the members of ``models`` that finished (those whose record exists);
    NoMemberTrained when none did. Returns what ``train_challenger`` returns, plus ``members_failed``."""
    from dkt_core.training.trainer import Member, Prepared, assemble

    done = _reused(run_id, ws)
    if done is not None:
        log.info("run %s already trained %s; reusing it", run_id, done["model_version"])
        record_training(ws.client, ws.bucket, {k: done[k] for k in ("run_id", "model_version", "data_version")})
        return {**done, "reused": True}
    prep = read_json(ws.client, ws.bucket, train_key(run_id, "prepared.json"))
    if prep is None:
        raise FileNotFoundError(f"run {run_id} has no prepared training set ({train_key(run_id, 'prepared.json')}); "
                                "the prepare task must succeed first")
    records = {m: read_json(ws.client, ws.bucket, _member_key(run_id, m, ".json")) for m in models}
    failed = [m for m, r in records.items() if r is None]
    if len(failed) == len(models):
        raise NoMemberTrained(f"no member of {models} finished training in run {run_id}: nothing to assemble "
                         "(see the train_member tasks' logs)")
    if failed:
        log.warning("member(s) %s did not finish (their tasks failed after their retries): the challenger is "
                    "assembled from %s only", failed, [m for m in models if m not in failed])
    with _workdir(ws) as work:
        prepared = Prepared.load(_fetch_prepared(run_id, ws, work, prep))
        members = []
        for m, r in records.items():
            if r is not None:
                dest = _fetch_dir(ws, _member_key(run_id, m, ".tar.gz"), r.get("sha256"), work / "members" / m)
                members.append(Member.load(dest))
        artifact = assemble(prepared, members, work / "artifact")
        published = _publish(run_id, prep["data_version"], artifact, ws)
    record = {**published, "train_rows": prep["train_rows"], "training_window_days": prep["training_window_days"],
              "members_failed": failed,
              "member_scores": {m: {k: r[k] for k in ("valid_auc", "n_valid_rows", "n_valid_users", "train_seconds")}
                                for m, r in records.items() if r is not None}}
    return _record(run_id, record, ws)


def train_challenger(run_id: str, data_version: str, train_uri: str, models: list[str], *,
                     model_options: dict[str, dict[str, Any]] | None = None,
                     training_window_days: int | None = None, seed: int = 0,
                     ws: Workspace) -> dict[str, Any]:
    """Train ``models`` on ``train_uri`` in one call (the three steps in turn); returns model_version,
    artifact URI and validation metrics. A member that fails here fails the call (no partial ensemble).

    The curated rows are handed to the trainer as a frame: they were validated and normalised when they
    were ingested, so nothing is written back to a file or validated again."""
    jobs = prepare_training(run_id, data_version, train_uri, models, model_options=model_options,
                            training_window_days=training_window_days, seed=seed, ws=ws)
    for job in jobs:
        train_run_member(run_id, job["model"], ws=ws)
    return assemble_challenger(run_id, models, ws=ws)


def _publish(run_id: str, data_version: str, artifact: Path, ws: Workspace) -> dict[str, Any]:
    """Upload the assembled artifact (and keep a local copy); its record fields."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    metrics = json.loads((artifact / "metrics.json").read_text())
    version = manifest["model_version"]
    uri, sha256 = upload_artifact(ws.client, ws.bucket, model_key(version, ARTIFACT_FILE), artifact)
    cache_local_artifact(artifact, ws.cache_dir, version, sha256)  # later tasks on this worker skip the download
    return {
        "run_id": run_id,
        "model_version": version,
        "data_version": data_version,
        "artifact_uri": uri,
        "artifact_sha256": sha256,  # checked before every later load of the artifact
        "models": artifact_models(manifest),
        "validation": metrics["validation"]["ensemble"],
        "ensemble_weights": metrics["ensemble_weights"],
        "train_seconds": manifest.get("train_seconds"),
    }


def _record(run_id: str, record: dict[str, Any], ws: Workspace) -> dict[str, Any]:
    write_json(ws.client, ws.bucket, challenger_record_key(run_id), record)  # after the upload: the retry marker
    # The minimum batch counts rows from here on (promoted or not, these rows have been trained on).
    record_training(ws.client, ws.bucket, {k: record[k] for k in ("run_id", "model_version", "data_version")})
    log.info("challenger %s -> %s", record["model_version"], record["artifact_uri"])
    return {**record, "reused": False}


def _fetch_prepared(run_id: str, ws: Workspace, work: Path, record: dict | None = None) -> Path:
    record = record or read_json(ws.client, ws.bucket, train_key(run_id, "prepared.json"))
    if record is None:
        raise FileNotFoundError(f"run {run_id} has no prepared training set; the prepare task must succeed first")
    return _fetch_dir(ws, train_key(run_id, "prepared.tar.gz"), record.get("sha256"), work / "prepared")


def _fetch_dir(ws: Workspace, key: str, sha256: str | None, dest: Path) -> Path:
    """Download a tarball written by ``upload_artifact``, check its bytes against the recorded sha256 and
    extract it into ``dest`` (tarfile's "data" filter: no absolute paths, ``..`` or links leading out)."""
    got = get_bytes(ws.client, ws.bucket, key)
    uri = ws.uri(key)
    if got is None:
        raise FileNotFoundError(f"{uri} is missing although its record exists; rerun the task that wrote it")
    meta = ws.client.head_object(Bucket=ws.bucket, Key=key).get("Metadata") or {}
    verify_sha256(got[0], sha256, uri, meta.get("sha256"))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(got[0]), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


class _workdir:
    """A temporary directory under the cache (removed afterwards), as a context manager."""

    def __init__(self, ws: Workspace):
        root = ws.cache_dir / "work"
        root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="dkt-train-", dir=root))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
