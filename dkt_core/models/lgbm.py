"""LightGBM on the engineered past-only features (the seed's tabular model, with Elo features)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL
from dkt_core.features.spec import FeatureSpec
from dkt_core.models.base import DKTModel, FitResult

SMALL_BATCH_ROWS = 20_000


@dataclass
class LGBMConfig:
    num_boost_round: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 63
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    num_threads: int = 2


class LGBMModel(DKTModel):
    name = "lgbm"
    Config = LGBMConfig

    def __init__(self, config: LGBMConfig | None = None, spec: FeatureSpec | None = None):
        super().__init__(config, spec)
        self.booster = None

    def _params(self, seed: int) -> dict:
        c = self.config
        return {
            "objective": "binary", "metric": "auc", "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves, "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction, "bagging_fraction": c.bagging_fraction, "bagging_freq": 1,
            "lambda_l2": c.lambda_l2, "num_threads": c.num_threads, "seed": seed, "deterministic": True,
            "force_row_wise": True, "verbosity": -1,
        }

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, spec: FeatureSpec, *, seed: int = 0,
            progress: bool = True) -> FitResult:
        import lightgbm as lgb

        self.spec = spec
        start = time.perf_counter()
        tr, va = train[train[LABEL] >= 0], valid[valid[LABEL] >= 0]
        dtrain = lgb.Dataset(tr[spec.tabular].to_numpy(np.float32), tr[LABEL].to_numpy(), free_raw_data=True)
        dvalid = lgb.Dataset(va[spec.tabular].to_numpy(np.float32), va[LABEL].to_numpy(), reference=dtrain)
        history: dict = {}
        callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False),
                     lgb.record_evaluation(history)]
        if progress:
            callbacks.append(lgb.log_evaluation(50))
        self.booster = lgb.train(self._params(seed), dtrain, self.config.num_boost_round,
                                 valid_sets=[dvalid], valid_names=["valid"], callbacks=callbacks)
        aucs = history.get("valid", {}).get("auc", [])
        return FitResult(
            seconds=time.perf_counter() - start,
            best_iteration=int(self.booster.best_iteration or len(aucs)),
            valid_auc=float(max(aucs)) if aucs else None,
            history=[{"round": i + 1, "valid_auc": a} for i, a in enumerate(aucs) if (i + 1) % 25 == 0],
        )

    def predict_proba(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("lgbm model is not fit")
        if rows is not None:  # a row's features already hold its past: score just those rows
            frame = frame.iloc[rows]
        x = frame[self.spec.tabular].to_numpy(np.float32)
        # OpenMP start-up costs ~8 ms per call on 2 busy cores; small (serving) batches run on one thread
        threads = 1 if len(x) < SMALL_BATCH_ROWS else self.config.num_threads
        return self.booster.predict(x, num_iteration=self.booster.best_iteration or None,
                                    num_threads=threads).astype(np.float64)

    def n_parameters(self) -> int:
        if self.booster is None:
            return 0
        dump = self.booster.dump_model()
        return int(sum(t["num_leaves"] for t in dump["tree_info"]))

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance("gain")
        return dict(sorted(zip(self.spec.tabular, map(float, gains), strict=True), key=lambda kv: -kv[1]))

    def _save_weights(self, directory: Path) -> None:
        self.booster.save_model(str(directory / "model.txt"), num_iteration=self.booster.best_iteration or None)

    def _load_weights(self, directory: Path) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_file=str(directory / "model.txt"))
