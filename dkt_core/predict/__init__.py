"""Serving-time prediction: the same FeaturePipeline as training, then the fitted ensemble.

Used by ``dkt predict``, ``dkt evaluate``, the BentoML service and live evaluation, so a prediction
served for a history equals the batch prediction on the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.normalise import sort_interactions
from dkt_core.training.artifact import Artifact, load_artifact


class Predictor:
    def __init__(self, artifact: Artifact):
        self.artifact = artifact

    @classmethod
    def load(cls, directory: str | Path) -> Predictor:
        return cls(load_artifact(directory))

    @property
    def model_version(self) -> str:
        return self.artifact.model_version

    def predict_members(self, interactions: pd.DataFrame, rows: np.ndarray | None = None
                        ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """(feature frame, member -> P(correct)) for typed interactions sorted per user by time.

        With ``rows`` (integer positions), only those rows' probabilities are returned and each member computes
        no more than those rows need (serving needs the targets, not the whole history)."""
        features = self.artifact.pipeline.transform(interactions)
        return features, {name: model.predict_proba(features, rows=rows)
                          for name, model in self.artifact.models.items()}

    def predict_frame(self, interactions: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """Ensemble P(correct) for every row (or the given ``rows``), each from its own past only."""
        _, preds = self.predict_members(interactions, rows)
        return self.artifact.ensemble.predict(preds)

    def predict_unsorted(self, interactions: pd.DataFrame) -> np.ndarray:
        """Like ``predict_frame`` for rows in any order; results follow the input order."""
        frame = interactions.reset_index(drop=True).assign(_row=lambda d: np.arange(len(d)))
        ordered = sort_interactions(frame)
        proba = self.predict_frame(ordered.drop(columns="_row"))
        out = np.empty(len(frame))
        out[ordered["_row"].to_numpy()] = proba
        return out
