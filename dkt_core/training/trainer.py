"""Training: validated log -> user split -> features -> each registered model -> ensemble -> artifact.

The trainer knows nothing model-specific: it talks to models only through the ``DKTModel`` surface
and picks them only through the ``MODELS`` registry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.data.fingerprint import fingerprint
from dkt_core.data.io import ReadLimits
from dkt_core.data.split import split_users
from dkt_core.data.validate import validate_file
from dkt_core.evaluation.metrics import evaluate_predictions
from dkt_core.features.pipeline import FeaturePipeline
from dkt_core.models import MODELS
from dkt_core.training.artifact import git_sha, write_artifact
from dkt_core.training.config import TrainConfig
from dkt_core.training.ensemble import SoftVoteEnsemble

log = logging.getLogger("dkt.train")
# The training users, as short hashes (never the ids themselves), one per line: `dkt evaluate` warns when
# an evaluation file's users overlap them. 12 hex digits: a chance collision among 10^5 users is ~2e-5.
TRAIN_USERS_FILE = "train_users.txt"
USER_HASH_HEX = 12


def user_hashes(users) -> set[str]:
    """Short SHA-256 hashes of user ids (as text)."""
    return {hashlib.sha256(str(u).encode()).hexdigest()[:USER_HASH_HEX] for u in pd.unique(pd.Series(users))}


def training_overlap(artifact_dir: str | Path, data_path: str | Path, *, limits: ReadLimits | None = None) -> list[str]:
    """Why scores of ``artifact_dir`` on ``data_path`` overstate the model, as sentences (empty: no reason):
    the file is the training file (its SHA-256 is the manifest's fingerprint) or shares users with the
    training log (``TRAIN_USERS_FILE``; artifacts older than it are checked by the file hash only)."""
    from dkt_core.data.fingerprint import file_sha256
    from dkt_core.data.io import read_raw  # every row's user, valid or not: a user is a user
    from dkt_core.training.artifact import MANIFEST

    artifact_dir = Path(artifact_dir)
    manifest = json.loads((artifact_dir / MANIFEST).read_text())
    warnings = []
    if file_sha256(data_path) == (manifest.get("fingerprint") or {}).get("sha256"):
        warnings.append(f"{data_path} is the file this model was trained on: these numbers are training-set "
                        "scores, not an evaluation; evaluate on users the model has not seen")
    stored = artifact_dir / TRAIN_USERS_FILE
    if stored.is_file():
        trained = set(stored.read_text().split())
        users = user_hashes(read_raw(data_path, limits).frame[USER].str.strip())
        shared = len(users & trained)
        if shared:
            warnings.append(f"{shared} of the {len(users)} users in {data_path} ({shared / len(users):.0%}) were "
                            "in the training data: their scores overstate the model on new students")
    return warnings


def train(data_path: str | Path, out_dir: str | Path, config: TrainConfig, *, progress: bool = True,
          limits: ReadLimits | None = None) -> Path:
    """Read and validate ``data_path`` (within ``limits``), then ``train_frame`` on its valid rows (the
    CLI's road)."""
    result = validate_file(data_path, limits=limits)
    if len(result.rejected):
        log.warning("%s: %d row(s) rejected and not used for training: %s", data_path, len(result.rejected),
                    result.reasons)
    return train_frame(result.valid, out_dir, config, progress=progress, source=data_path)


def train_frame(frame: pd.DataFrame, out_dir: str | Path, config: TrainConfig, *, progress: bool = True,
                source: str | Path | None = None) -> Path:
    """Train ``config.models`` on ``frame`` (interactions already validated and normalised: a validation's
    valid rows or a curated version) and write a self-contained artifact to ``out_dir``. ``source``: the
    file the frame was read from (the fingerprint hashes it); None hashes the frame's rows."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    frame = frame[frame[LABEL] >= 0].reset_index(drop=True)  # rows to predict carry no label to learn
    fp = fingerprint(source, frame)
    log.info("data: %d rows, %d users (%s)", fp["rows"], fp["users"], fp["data_version"])

    train_df, valid_df = split_users(frame, config.valid_frac, salt=f"valid-{config.seed}")
    log.info("split by user: %d train users, %d validation users", train_df[USER].nunique(), valid_df[USER].nunique())

    t = time.perf_counter()
    pipeline = FeaturePipeline(config.features)
    f_train = pipeline.fit_transform(train_df)
    f_valid = pipeline.transform(valid_df)
    log.info("features: %d columns in %.1fs", f_train.shape[1], time.perf_counter() - t)

    models, valid_pred, member_info = {}, {}, {}
    for i, name in enumerate(config.models, 1):
        log.info("[%d/%d] training %s", i, len(config.models), name)
        model = MODELS[name](config.model_config(name))
        fit = model.fit(f_train, f_valid, pipeline.spec, seed=config.seed, progress=progress)
        valid_pred[name] = model.predict_proba(f_valid)
        models[name] = model
        member_info[name] = {"train_seconds": round(fit.seconds, 2), "best_iteration": fit.best_iteration,
                             "n_parameters": model.n_parameters(), "history": fit.history}
        log.info("[%d/%d] %s done in %.1fs", i, len(config.models), name, fit.seconds)

    ensemble = SoftVoteEnsemble.fit(valid_pred, f_valid[LABEL].to_numpy())
    users, labels = f_valid[USER].to_numpy(), f_valid[LABEL].to_numpy()
    metrics = {"validation": {name: {**evaluate_predictions(users, labels, p, n_boot=0), **member_info[name]}
                              for name, p in valid_pred.items()}}
    metrics["validation"]["ensemble"] = evaluate_predictions(users, labels, ensemble.predict(valid_pred))
    metrics["ensemble_weights"] = ensemble.weights

    trained_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data_version = config.data_version or fp["data_version"]
    digest = hashlib.sha256(json.dumps([fp["sha256"], config.to_dict()], sort_keys=True).encode()).hexdigest()[:8]
    manifest = {
        "model_version": f"{trained_at[:19].replace('-', '').replace(':', '').replace('T', '-')}-{digest}",
        "data_version": data_version,
        "trained_at": trained_at,
        "members": list(models),
        "git_sha": git_sha(),
        "fingerprint": fp,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "n_train_users": int(train_df[USER].nunique()),
        "n_valid_users": int(valid_df[USER].nunique()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TRAIN_USERS_FILE).write_text("\n".join(sorted(user_hashes(frame[USER]))) + "\n")
    manifest["train_users"] = {"file": TRAIN_USERS_FILE, "n": fp["users"], "hash": f"sha256[:{USER_HASH_HEX}]"}
    write_artifact(out_dir, manifest=manifest, config_dict=config.to_dict(), pipeline=pipeline, models=models,
                   ensemble=ensemble, metrics=metrics)
    ens = metrics["validation"]["ensemble"]
    log.info("artifact %s (%s): validation auc_all=%s auc_last=%s in %.0fs", out_dir, manifest["model_version"],
             ens["auc_all"], ens["auc_last"], manifest["train_seconds"])
    return out_dir


