"""Scoring a trained artifact on a file (evaluation) and batch prediction of the -1 rows, beside the
``Predictor`` they use (the metrics themselves are ``dkt_core.evaluation.metrics``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.data.io import ReadLimits
from dkt_core.data.validate import load_interactions
from dkt_core.evaluation.metrics import evaluate_predictions
from dkt_core.predict import Predictor


def evaluate_frame(predictor: Predictor, frame: pd.DataFrame, *, n_boot: int = 100) -> dict:
    """Metrics of the ensemble and of each member on typed, sorted interactions of unseen users."""
    features, preds = predictor.predict_members(frame)
    users, labels = features[USER].to_numpy(), features[LABEL].to_numpy()
    report = evaluate_predictions(users, labels, predictor.artifact.ensemble.predict(preds), n_boot=n_boot)
    report["members"] = {n: evaluate_predictions(users, labels, p, n_boot=0) for n, p in preds.items()}
    report["model_version"] = predictor.model_version
    return report


def evaluate_artifact(model_dir: str | Path, data_path: str | Path, *, n_boot: int = 100,
                      limits: ReadLimits | None = None) -> dict:
    predictor = Predictor.load(model_dir)
    frame = load_interactions(data_path, limits=limits)
    report = evaluate_frame(predictor, frame, n_boot=n_boot)
    report["data"] = str(data_path)
    return report


def predict_file(model_dir: str | Path, data_path: str | Path, out_path: str | Path, *,
                 limits: ReadLimits | None = None) -> int:
    """Write userID,assessmentItemID,prediction for every row with answerCode -1; returns the count."""
    predictor = Predictor.load(model_dir)
    frame = load_interactions(data_path, limits=limits)
    targets = (frame[LABEL] == -1).to_numpy()
    if not targets.any():
        raise ValueError(f"{data_path} has no rows with answerCode -1 to predict")
    proba = predictor.predict_frame(frame)
    out = pd.DataFrame({USER: frame.loc[targets, USER].to_numpy(),
                        "assessmentItemID": frame.loc[targets, "assessmentItemID"].to_numpy(),
                        "prediction": np.round(proba[targets], 6)})
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_path, index=False)
    return len(out)
