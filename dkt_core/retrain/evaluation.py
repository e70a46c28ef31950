"""Challenger and champion scored on the same fixed hold-out users (what the gate compares).

Each model predicts the hold-out once; the same per-row predictions give both models' metrics, the
paired difference challenger - champion with its user-bootstrap interval (both AUCs on the same
resample of users in every replicate) and the per-row file the report plots. The gate reads the paired
difference from this step's summary: nothing is predicted twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.evaluation.metrics import evaluate_predictions, paired_auc_difference
from dkt_core.ingest.layout import model_key
from dkt_core.retrain.artifacts import fetch_artifact
from dkt_core.retrain.champion import champion_dir, read_champion
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.objects import read_parquet, write_json, write_parquet
from dkt_core.storage.workspace import Workspace
from dkt_core.training.versions import check_model_version


def _score(predictor, holdout: pd.DataFrame, settings: RetrainSettings) -> tuple[dict[str, Any], np.ndarray]:
    """(metrics of the ensemble and of each member, ensemble prediction per hold-out row): one prediction."""
    features, members = predictor.predict_members(holdout)
    proba = predictor.artifact.ensemble.predict(members)
    users, labels = features[USER].to_numpy(), features[LABEL].to_numpy()
    report = evaluate_predictions(users, labels, proba, n_boot=settings.bootstrap, seed=settings.bootstrap_seed)
    report["members"] = {n: evaluate_predictions(users, labels, p, n_boot=0) for n, p in members.items()}
    report["model_version"] = predictor.model_version
    return report, proba


def evaluate_candidates(model_version: str, artifact_uri: str, holdout_uri: str, *, artifact_sha256: str | None = None,
                        settings: RetrainSettings, ws: Workspace) -> dict[str, Any]:
    """Metrics of the challenger and of the current champion (if any) on ``holdout_uri``.

    Writes models/<version>/evaluation.json and the per-row predictions the report plots; returns the
    summary (metrics, the paired difference + URIs) for XCom.
    """
    from dkt_core.predict import Predictor

    check_model_version(model_version)
    client, bucket = ws.client, ws.bucket
    holdout = read_parquet(client, holdout_uri)
    challenger = Predictor.load(fetch_artifact(client, artifact_uri, ws.cache_dir, model_version,
                                               sha256=artifact_sha256))
    ch_report, ch_pred = _score(challenger, holdout, settings)
    preds = pd.DataFrame({USER: holdout[USER], LABEL: holdout[LABEL], "challenger": ch_pred})

    champion = read_champion(client, bucket)
    cp_report, paired = None, None
    if champion is not None and champion["model_version"] != model_version:
        cp = Predictor.load(champion_dir(client, champion, ws.cache_dir))
        cp_report, cp_pred = _score(cp, holdout, settings)
        preds["champion"] = cp_pred
        paired = paired_auc_difference(preds[USER].to_numpy(), preds[LABEL].to_numpy(), ch_pred, cp_pred,
                                       n_boot=settings.bootstrap, seed=settings.bootstrap_seed)
    result = {
        "model_version": model_version,
        "holdout_uri": holdout_uri,
        "challenger": ch_report,
        "champion": cp_report,
        "champion_version": champion["model_version"] if champion else None,
        "paired": paired,  # challenger - champion auc_all on the same users, paired bootstrap interval
        "predictions_uri": write_parquet(client, bucket, model_key(model_version, "holdout_predictions.parquet"),
                                         preds),
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    result["evaluation_uri"] = write_json(client, bucket, model_key(model_version, "evaluation.json"), result)
    return summary(result)


def summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The small part of an evaluation that travels through XCom."""
    def pick(rep: dict[str, Any] | None) -> dict[str, Any] | None:
        if rep is None:
            return None
        return {k: rep.get(k) for k in ("auc_all", "auc_last", "acc_all", "logloss_all", "auc_all_ci95",
                                        "n_users", "n_rows")}

    return {"model_version": evaluation["model_version"], "champion_version": evaluation["champion_version"],
            "challenger": pick(evaluation["challenger"]), "champion": pick(evaluation["champion"]),
            "paired": evaluation.get("paired"),
            "evaluation_uri": evaluation["evaluation_uri"], "predictions_uri": evaluation["predictions_uri"],
            "holdout_uri": evaluation["holdout_uri"]}
