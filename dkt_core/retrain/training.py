"""Train the challenger on the train users of a curated version and store the artifact in S3.

All selected models are trained in one call: the soft-vote ensemble weights are fit on the members'
joint validation predictions, so members of one artifact cannot be trained in separate tasks.
A retry of the same run reuses the artifact its earlier attempt uploaded (``runs/<run>/challenger.json``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from dkt_core.ingest.layout import ARTIFACT_FILE, challenger_record_key, model_key
from dkt_core.retrain.artifacts import cache_local_artifact, upload_artifact
from dkt_core.retrain.batch import record_training
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.retrain.workspace import task_workspace
from dkt_core.storage.objects import read_json, read_parquet, write_json
from dkt_core.storage.s3 import S3Settings
from dkt_core.storage.workspace import Workspace
from dkt_core.training.versions import check_model_version

log = logging.getLogger(__name__)


def window(frame: pd.DataFrame, days: int | None) -> pd.DataFrame:
    """Rows of the last ``days`` days before the newest timestamp (all rows when None)."""
    if not days:
        return frame
    if days < 1:
        raise ValueError(f"training_window_days must be >= 1, got {days}")
    cutoff = frame["Timestamp"].max() - pd.Timedelta(days=days)
    return frame[frame["Timestamp"] >= cutoff].reset_index(drop=True)


def train_challenger(run_id: str, data_version: str, train_uri: str, models: list[str], *,
                     model_options: dict[str, dict[str, Any]] | None = None,
                     training_window_days: int | None = None, seed: int = 0,
                     settings: RetrainSettings | None = None, s3: S3Settings | None = None,
                     ws: Workspace | None = None) -> dict[str, Any]:
    """Train ``models`` on ``train_uri``; returns model_version, artifact URI and validation metrics.

    The curated rows are handed to the trainer as a frame: they were validated and normalised when they
    were ingested, so nothing is written back to a file or validated again."""
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train_frame

    settings = settings or RetrainSettings.from_env()
    ws = task_workspace(ws, s3=s3, settings=settings)
    client, bucket = ws.client, ws.bucket
    done = read_json(client, bucket, challenger_record_key(run_id))
    if done is not None:
        check_model_version(done.get("model_version"), source=f"{challenger_record_key(run_id)} model_version")
        log.info("run %s already trained %s; reusing it", run_id, done["model_version"])
        record_training(client, bucket, {k: done[k] for k in ("run_id", "model_version", "data_version")})
        return {**done, "reused": True}

    config = TrainConfig(models=list(models), seed=seed, model_options=model_options or {},
                         data_version=data_version)
    frame = window(read_parquet(client, train_uri), training_window_days)
    if frame.empty:
        raise ValueError(f"no training rows left after the {training_window_days}-day window; widen it")
    work = Path(tempfile.mkdtemp(prefix="dkt-train-", dir=_mkdir(ws.cache_dir / "work")))
    try:
        artifact = train_frame(frame, work / "artifact", config, progress=False)
        manifest = json.loads((artifact / "manifest.json").read_text())
        metrics = json.loads((artifact / "metrics.json").read_text())
        version = manifest["model_version"]
        uri, sha256 = upload_artifact(client, bucket, model_key(version, ARTIFACT_FILE), artifact)
        cache_local_artifact(artifact, ws.cache_dir, version, sha256)  # later tasks skip the download
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "run_id": run_id,
        "model_version": version,
        "data_version": data_version,
        "artifact_uri": uri,
        "artifact_sha256": sha256,  # checked before every later load of the artifact
        "models": list(models),
        "train_rows": int(len(frame)),
        "training_window_days": training_window_days,
        "validation": metrics["validation"]["ensemble"],
        "train_seconds": manifest.get("train_seconds"),
    }
    write_json(client, bucket, challenger_record_key(run_id), record)  # after the upload: the retry marker
    # The minimum batch counts rows from here on (promoted or not, these rows have been trained on).
    record_training(client, bucket, {k: record[k] for k in ("run_id", "model_version", "data_version")})
    log.info("challenger %s -> %s", version, uri)
    return {**record, "reused": False}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
