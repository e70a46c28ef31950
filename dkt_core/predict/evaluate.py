"""Scoring a trained artifact on a file (evaluation) and batch prediction of the -1 rows, beside the
``Predictor`` they use (the metrics themselves are ``dkt_core.evaluation.metrics``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.columns import ITEM, LABEL, TIME, TIMESTAMP_FORMAT, USER
from dkt_core.data.io import ReadLimits, read_raw
from dkt_core.data.validate import load_interactions, validate_raw
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
    """Write line,userID,assessmentItemID,Timestamp,prediction for every row with answerCode -1 (``line``: the
    row's record number in the input, header = 1, so a repeated item maps back to its row); returns the count."""
    predictor = Predictor.load(model_dir)
    raw = read_raw(data_path, limits)
    frame = validate_raw(raw).valid
    targets = (frame[LABEL] == -1).to_numpy()
    if not targets.any():
        raise ValueError(f"{data_path} has no rows with answerCode -1 to predict")
    proba = predictor.predict_frame(frame)
    out = frame.loc[targets, [USER, ITEM, TIME]].reset_index(drop=True)
    out.insert(0, "line", _input_lines(raw.frame, out))
    out[TIME] = out[TIME].dt.strftime(TIMESTAMP_FORMAT)
    out["prediction"] = np.round(proba[targets], 6)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_path, index=False)
    return len(out)


def _input_lines(raw: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The input record number of each (user, item, Timestamp) row to predict: the first raw row with that key
    and answerCode -1 (exact duplicates were dropped by validation, the first one kept)."""
    asked = raw[raw[LABEL].str.strip() == "-1"]
    keys = pd.DataFrame({USER: asked[USER].str.strip(), ITEM: asked[ITEM].str.strip(),
                         TIME: pd.to_datetime(asked[TIME].str.strip(), format=TIMESTAMP_FORMAT, errors="coerce"),
                         "line": asked["line"].to_numpy()}).drop_duplicates([USER, ITEM, TIME])
    return rows.merge(keys, on=[USER, ITEM, TIME], how="left")["line"].astype("Int64").to_numpy()
