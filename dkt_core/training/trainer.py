"""Training: validated log -> user split -> features -> each registered model -> ensemble -> artifact.

Three steps, each usable on its own: ``prepare`` (split + features, once), ``train_member`` (one model;
members are independent, so they may train in separate processes or machines) and ``assemble`` (ensemble
weights + artifact). ``train_frame`` runs them in one process; the retraining DAG runs them as tasks.

The trainer knows nothing model-specific: it talks to models only through the ``DKTModel`` surface
and picks them only through the ``MODELS`` registry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.data.fingerprint import fingerprint
from dkt_core.data.io import ReadLimits
from dkt_core.data.split import split_users
from dkt_core.data.validate import validate_file
from dkt_core.evaluation.metrics import evaluate_predictions
from dkt_core.features.pipeline import FeaturePipeline
from dkt_core.models import MODELS, DKTModel, get_model_class
from dkt_core.training.artifact import git_sha, write_artifact
from dkt_core.training.config import TrainConfig
from dkt_core.training.ensemble import SoftVoteEnsemble

log = logging.getLogger("dkt.train")
# The training users, as short hashes (never the ids themselves), one per line: `dkt evaluate` warns when
# an evaluation file's users overlap them. 12 hex digits: a chance collision among 10^5 users is ~2e-5.
TRAIN_USERS_FILE = "train_users.txt"
USER_HASH_HEX = 12
PREPARED_FILE = "prepared.json"  # in a saved Prepared: written last
MEMBER_FILE = "member.json"  # in a saved Member: written last


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
    file the frame was read from (the fingerprint hashes it); None hashes the frame's rows.

    One process running the three steps the retraining DAG runs as separate tasks: ``prepare`` once, then
    ``train_member`` per model (in any order, anywhere), then ``assemble``."""
    prepared = prepare(frame, config, source=source)
    members = [train_member(name, prepared, progress=progress, position=(i, len(config.models)))
               for i, name in enumerate(config.models, 1)]
    return assemble(prepared, members, out_dir)


@dataclass
class Prepared:
    """The split and the fitted features, computed once and shared by every member (step 1)."""

    config: TrainConfig
    fingerprint: dict
    pipeline: FeaturePipeline
    train: pd.DataFrame  # feature frames of the train / validation users
    valid: pd.DataFrame
    n_train_users: int
    n_valid_users: int
    train_user_hashes: list[str]  # sorted; every user of the frame (TRAIN_USERS_FILE)
    seconds: float

    def save(self, directory: str | Path) -> Path:
        """Write to ``directory`` (JSON + parquet only: read back, nothing in it is executed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.pipeline.save(directory / "features")
        self.train.to_parquet(directory / "train.parquet")
        self.valid.to_parquet(directory / "valid.parquet")
        (directory / TRAIN_USERS_FILE).write_text("\n".join(self.train_user_hashes) + "\n")
        meta = {"config": self.config.to_dict(), "fingerprint": self.fingerprint, "seconds": self.seconds,
                "n_train_users": self.n_train_users, "n_valid_users": self.n_valid_users}
        (directory / PREPARED_FILE).write_text(json.dumps(meta, indent=2))  # last: marks a complete copy
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Prepared:
        directory = Path(directory)
        meta = _read_marker(directory, PREPARED_FILE, "a prepared training set")
        return cls(config=TrainConfig(**meta["config"]), fingerprint=meta["fingerprint"],
                   pipeline=FeaturePipeline.load(directory / "features"),
                   train=pd.read_parquet(directory / "train.parquet"), valid=pd.read_parquet(directory / "valid.parquet"),
                   n_train_users=int(meta["n_train_users"]), n_valid_users=int(meta["n_valid_users"]),
                   train_user_hashes=(directory / TRAIN_USERS_FILE).read_text().split(), seconds=float(meta["seconds"]))


def _read_marker(directory: Path, marker: str, what: str) -> dict:
    """The JSON marker a save wrote last (so its presence means a complete copy); a clear error without it."""
    if not (directory / marker).is_file():
        raise FileNotFoundError(f"{directory} holds no {marker}: not {what}")
    return json.loads((directory / marker).read_text())


@dataclass
class Member:
    """One trained member and its validation predictions (step 2's result)."""

    name: str
    model: DKTModel
    valid_pred: np.ndarray  # P(correct) per row of Prepared.valid
    info: dict  # train_seconds, best_iteration, n_parameters, history (metrics.json)
    seconds: float  # the whole step (fit + validation predictions)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / "model")
        np.save(directory / "valid_pred.npy", np.asarray(self.valid_pred, dtype=np.float64))
        (directory / MEMBER_FILE).write_text(json.dumps({"name": self.name, "info": self.info, "seconds": self.seconds}))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Member:
        directory = Path(directory)
        meta = _read_marker(directory, MEMBER_FILE, "a trained member")
        name = meta["name"]
        model = get_model_class(name).load(directory / "model")
        pred = np.load(directory / "valid_pred.npy", allow_pickle=False)  # plain floats, never objects
        return cls(name, model, pred, meta["info"], float(meta["seconds"]))


def prepare(frame: pd.DataFrame, config: TrainConfig, *, source: str | Path | None = None) -> Prepared:
    """Step 1: labelled rows -> user split (seeded) -> features fit on the train users. Deterministic given
    the frame and the config."""
    t0 = time.perf_counter()
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
    return Prepared(config=config, fingerprint=fp, pipeline=pipeline, train=f_train, valid=f_valid,
                    n_train_users=int(train_df[USER].nunique()), n_valid_users=int(valid_df[USER].nunique()),
                    train_user_hashes=sorted(user_hashes(frame[USER])), seconds=time.perf_counter() - t0)


def train_member(name: str, prepared: Prepared, *, progress: bool = True,
                 position: tuple[int, int] | None = None) -> Member:
    """Step 2: fit one model of ``prepared.config.models`` and predict the validation users."""
    if name not in prepared.config.models:
        raise ValueError(f"model {name!r} is not one of this training's models {prepared.config.models}")
    where = f"[{position[0]}/{position[1]}] " if position else ""
    log.info("%straining %s", where, name)
    t0 = time.perf_counter()
    model = MODELS[name](prepared.config.model_config(name))
    fit = model.fit(prepared.train, prepared.valid, prepared.pipeline.spec, seed=prepared.config.seed,
                    progress=progress)
    pred = model.predict_proba(prepared.valid)
    info = {"train_seconds": round(fit.seconds, 2), "best_iteration": fit.best_iteration,
            "n_parameters": model.n_parameters(), "history": fit.history}
    log.info("%s%s done in %.1fs", where, name, fit.seconds)
    return Member(name, model, pred, info, time.perf_counter() - t0)


def assemble(prepared: Prepared, members: list[Member], out_dir: str | Path) -> Path:
    """Step 3: fit the soft-vote weights on the members' validation predictions and write the artifact.

    ``members`` may be any non-empty subset of ``prepared.config.models`` in any order: the artifact lists
    them in the config's order, and its config names exactly them (so the model version says what it holds)."""
    t0 = time.perf_counter()
    by_name = {m.name: m for m in members}
    if not by_name:
        raise ValueError("no member was trained: nothing to assemble (see the members' errors)")
    unknown = sorted(set(by_name) - set(prepared.config.models))
    if unknown:
        raise ValueError(f"member(s) {unknown} are not among this training's models {prepared.config.models}")
    names = [n for n in prepared.config.models if n in by_name]
    config = replace(prepared.config, models=names)
    f_valid = prepared.valid
    valid_pred = {n: by_name[n].valid_pred for n in names}
    for n, p in valid_pred.items():
        if len(p) != len(f_valid):
            raise ValueError(f"member {n!r} has {len(p)} validation predictions for {len(f_valid)} rows: "
                             "it was trained on another prepared set; retrain it")
    ensemble = SoftVoteEnsemble.fit(valid_pred, f_valid[LABEL].to_numpy())
    users, labels = f_valid[USER].to_numpy(), f_valid[LABEL].to_numpy()
    metrics = {"validation": {n: {**evaluate_predictions(users, labels, p, n_boot=0), **by_name[n].info}
                              for n, p in valid_pred.items()}}
    metrics["validation"]["ensemble"] = evaluate_predictions(users, labels, ensemble.predict(valid_pred))
    metrics["ensemble_weights"] = ensemble.weights

    fp = prepared.fingerprint
    trained_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data_version = config.data_version or fp["data_version"]
    digest = hashlib.sha256(json.dumps([fp["sha256"], config.to_dict()], sort_keys=True).encode()).hexdigest()[:8]
    seconds = prepared.seconds + sum(by_name[n].seconds for n in names) + time.perf_counter() - t0
    manifest = {
        "model_version": f"{trained_at[:19].replace('-', '').replace(':', '').replace('T', '-')}-{digest}",
        "data_version": data_version,
        "trained_at": trained_at,
        "models": names,
        "git_sha": git_sha(),
        "fingerprint": fp,
        "train_seconds": round(seconds, 1),  # the steps' own time (members trained apart: their sum)
        "n_train_users": prepared.n_train_users,
        "n_valid_users": prepared.n_valid_users,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TRAIN_USERS_FILE).write_text("\n".join(prepared.train_user_hashes) + "\n")
    manifest["train_users"] = {"file": TRAIN_USERS_FILE, "n": fp["users"], "hash": f"sha256[:{USER_HASH_HEX}]"}
    write_artifact(out_dir, manifest=manifest, config_dict=config.to_dict(), pipeline=prepared.pipeline,
                   models={n: by_name[n].model for n in names}, ensemble=ensemble, metrics=metrics)
    ens = metrics["validation"]["ensemble"]
    log.info("artifact %s (%s): validation auc_all=%s auc_last=%s in %.0fs", out_dir, manifest["model_version"],
             ens["auc_all"], ens["auc_last"], manifest["train_seconds"])
    return out_dir
