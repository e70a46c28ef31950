"""Challenger and champion scored on the same fixed hold-out users (what the gate compares)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from dkt_core.models.base import LABEL, USER
from dkt_core.retrain.champion import champion_dir, read_champion
from dkt_core.retrain.layout import model_key
from dkt_core.retrain.s3io import fetch_artifact, read_parquet, write_json, write_parquet
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.s3 import S3Settings, s3_client


def _score(predictor, holdout: pd.DataFrame, n_boot: int) -> tuple[dict[str, Any], Any]:
    from dkt_core.evaluation.evaluate import evaluate_frame

    report = evaluate_frame(predictor, holdout, n_boot=n_boot)
    return report, predictor.predict_frame(holdout)


def evaluate_candidates(model_version: str, artifact_uri: str, holdout_uri: str, *,
                        settings: RetrainSettings | None = None, s3: S3Settings | None = None) -> dict[str, Any]:
    """Metrics of the challenger and of the current champion (if any) on ``holdout_uri``.

    Writes models/<version>/evaluation.json and the per-row predictions the report plots; returns the
    summary (metrics + URIs) for XCom.
    """
    from dkt_core.predict import Predictor

    settings = settings or RetrainSettings.from_env()
    s3 = s3 or S3Settings.from_env()
    client, bucket = s3_client(s3), s3.bucket
    holdout = read_parquet(client, holdout_uri)
    challenger = Predictor.load(fetch_artifact(client, artifact_uri, settings.cache_dir, model_version))
    ch_report, ch_pred = _score(challenger, holdout, settings.bootstrap)
    preds = pd.DataFrame({USER: holdout[USER], LABEL: holdout[LABEL], "challenger": ch_pred})

    champion = read_champion(client, bucket)
    cp_report = None
    if champion is not None and champion["model_version"] != model_version:
        cp = Predictor.load(champion_dir(client, champion, settings.cache_dir))
        cp_report, cp_pred = _score(cp, holdout, settings.bootstrap)
        preds["champion"] = cp_pred
    result = {
        "model_version": model_version,
        "holdout_uri": holdout_uri,
        "challenger": ch_report,
        "champion": cp_report,
        "champion_version": champion["model_version"] if champion else None,
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
            "evaluation_uri": evaluation["evaluation_uri"], "predictions_uri": evaluation["predictions_uri"],
            "holdout_uri": evaluation["holdout_uri"]}
