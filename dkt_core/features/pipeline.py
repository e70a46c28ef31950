"""FeaturePipeline: interactions -> feature frame, the one code path for training and serving.

``fit_transform`` on the training users fits the encoders, the population statistics and the scaler
(population statistics out-of-fold on those rows); ``transform`` applies the stored state to anything
else (validation users, evaluation files, a request's history at serving time). State is saved as JSON
next to the model so a retrained model always ships with its own encoders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.data.groupops import UserGroupings
from dkt_core.features.elo import difficulty_from_accuracy, elo_ratings
from dkt_core.features.encoders import CategoryEncoder, NumericScaler
from dkt_core.features.history import history_features, residual_features
from dkt_core.features.ids import decompose_items, elapsed_seconds
from dkt_core.features.spec import FeatureSpec
from dkt_core.features.stats import SMOOTHING, STAT_KEYS, PopulationStats, out_of_fold

# Encoded categorical inputs of the sequence models (item/test/tag ids, id parts, elapsed 1-s bin,
# previous answer: 2 wrong, 3 correct, 1 none).
CATEGORICAL = ["item", "test", "tag", "head", "mid", "tail", "mid_tail", "elapsed_bin", "prev_answer"]
ENCODED = ["item", "test", "tag", "head", "mid", "tail", "mid_tail"]


@dataclass(frozen=True)
class FeatureConfig:
    oof_folds: int = 5
    seed: int = 0


class FeaturePipeline:
    def __init__(self, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()
        self.encoders: dict[str, CategoryEncoder] = {}
        self.stats: PopulationStats | None = None
        self.scaler: NumericScaler | None = None

    # -- public API ------------------------------------------------------------------------------------
    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        base = _base_columns(frame)
        self.encoders = {c: CategoryEncoder.fit(base["categorical"][c][1]) for c in ENCODED}
        keys = _stat_keys(base)
        self.stats = PopulationStats.fit(keys, base["answer"])
        oof = out_of_fold(keys, base["answer"], base["user_code"], self.config.oof_folds, self.config.seed)
        numeric = self._numeric(base, oof)
        self.scaler = NumericScaler.fit(numeric)
        return self._assemble(frame, base, numeric)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.stats is None or self.scaler is None:
            raise RuntimeError("FeaturePipeline must be fit (or loaded) before transform")
        base = _base_columns(frame)
        numeric = self._numeric(base, self.stats.transform(_stat_keys(base)))
        return self._assemble(frame, base, numeric)

    @property
    def spec(self) -> FeatureSpec:
        cards = {c: self.encoders[c].cardinality for c in ENCODED}
        cards.update({"elapsed_bin": 602 + 2, "prev_answer": 4})
        numeric = list(self.scaler.mean) if self.scaler else []
        return FeatureSpec(categorical=cards, numeric=numeric, tabular=numeric)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "encoders": {k: v.vocab for k, v in self.encoders.items()},
            "stats": self.stats.to_dict() if self.stats else None,
            "scaler": {"mean": self.scaler.mean, "std": self.scaler.std} if self.scaler else None,
        }
        (directory / "feature_state.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, directory: str | Path) -> FeaturePipeline:
        state = json.loads((Path(directory) / "feature_state.json").read_text())
        pipe = cls(FeatureConfig(**state["config"]))
        pipe.encoders = {k: CategoryEncoder(vocab=v) for k, v in state["encoders"].items()}
        pipe.stats = PopulationStats.from_dict(state["stats"])
        pipe.scaler = NumericScaler(**state["scaler"])
        return pipe

    # -- internals -------------------------------------------------------------------------------------
    def _numeric(self, base: dict, pop: dict[str, np.ndarray], *, vectorised_elo: bool = False
                 ) -> dict[str, np.ndarray]:
        # plain dicts of arrays: one DataFrame is built at the end (per-column pandas assignment was
        # most of the cost on a single student's history)
        prior = self.stats.prior
        codes = {k: key[0] for k, key in _stat_keys(base).items()}
        groups = base["groups"]
        num = history_features(
            groups, codes["item"], codes["test"], codes["tag"], codes["head"],
            base["answer"], base["seconds"], prior,
        )
        num.update(pop)
        # item difficulty shrunk towards its test's accuracy instead of the global one: most items have
        # few answers, and their test says more about them than the population does
        num["item_acc_h"] = pop["item_acc"] + SMOOTHING * (pop["test_acc"] - prior) / (np.expm1(pop["item_pop"]) + SMOOTHING)
        num.update(residual_features(groups, codes["tag"], base["answer"], num["item_acc_h"]))
        num["tag_acc_gap"] = num["user_tag_acc"] - num["tag_acc"]
        difficulty = difficulty_from_accuracy(num["item_acc_h"])
        num["elo_theta"], num["elo_p"] = elo_ratings(base["user_code"], base["pos"], difficulty, base["answer"],
                                                   vectorised=vectorised_elo)
        num["elapsed_log"] = np.log1p(base["elapsed"])
        by_user = groups.by("user")
        n_before = base["pos"]
        num["user_elapsed_mean"] = np.log1p(by_user.sum_before(base["elapsed"]) / np.maximum(n_before, 1))
        num["tail_num"] = base["tail_num"]
        return {k: np.asarray(v, dtype=np.float64) for k, v in num.items()}

    def _assemble(self, frame: pd.DataFrame, base: dict, numeric: dict[str, np.ndarray]) -> pd.DataFrame:
        # Three blocks joined without re-stacking: the user ids, one column-major int64 block (label and
        # categorical codes), one float32 block (scaled numerics). Each is written once, in place.
        names = [LABEL, *ENCODED, "elapsed_bin", "prev_answer"]
        codes = np.empty((len(frame), len(names)), dtype=np.int64, order="F")
        codes[:, 0] = base["answer"]
        for j, c in enumerate(ENCODED, start=1):
            codes[:, j] = self.encoders[c].transform_codes(*base["categorical"][c])
        codes[:, 1 + len(ENCODED)] = base["elapsed"].astype(np.int64) + 2
        prev = base["groups"].by("user").previous(base["answer"], fill=-2)
        codes[:, 2 + len(ENCODED)] = np.select([prev == 0, prev == 1], [2, 3], 1)
        index = frame.index
        blocks = [
            pd.DataFrame({USER: frame[USER].to_numpy()}, index=index),
            pd.DataFrame(codes, columns=names, index=index, copy=False),
            pd.DataFrame(self.scaler.transform(numeric), columns=list(self.scaler.mean), index=index, copy=False),
        ]
        return pd.concat(blocks, axis=1, copy=False)


def _base_columns(frame: pd.DataFrame, item_test: dict[str, str] | None = None) -> dict:
    """Codes and raw arrays every feature family needs; checks the frame is sorted per user by time.

    ``item_test``: each item's test (the test of its first row in the whole log this frame is a chunk of);
    default: the test of the item's first row in ``frame``."""
    user_code = pd.factorize(frame[USER])[0].astype(np.int64)
    ts = frame["Timestamp"]
    seconds = ts.to_numpy().astype("datetime64[s]").astype(np.int64)
    if len(frame) > 1:
        user_changes = np.count_nonzero(user_code[1:] != user_code[:-1])
        backwards = (user_code[1:] == user_code[:-1]) & (seconds[1:] < seconds[:-1])
        if user_changes + 1 != user_code.max() + 1 or backwards.any():
            raise ValueError("interactions must be sorted per user by time (dkt_core.data.validate sorts them)")
    groups = UserGroupings(user_code)
    item, test, tag = (_factorize(frame[c]) for c in ("assessmentItemID", "testId", "KnowledgeTag"))
    # the id parts are computed once per distinct item, then gathered by item code
    first_row = np.zeros(len(item[1]), dtype=np.int64)
    first_row[item[0][::-1]] = np.arange(len(frame))[::-1]
    item_tests = test[1][test[0][first_row]]
    if item_test is not None:
        item_tests = np.array([item_test[i] for i in item[1]], dtype=object)
    parts = decompose_items(item[1], item_tests)
    head_of_item, head_uniques = _factorize(parts["head"])
    categorical = {"item": item, "test": test, "tag": tag}
    categorical.update({c: (item[0], parts[c]) for c in ("head", "mid", "tail", "mid_tail")})
    return {
        "user_code": user_code,
        "categorical": categorical,
        "stat_keys": {"item": item, "test": test, "tag": tag, "head": (head_of_item[item[0]], head_uniques)},
        "tail_num": parts["tail_num"][item[0]],
        "answer": frame[LABEL].to_numpy().astype(np.int64),
        "seconds": seconds,
        "elapsed": elapsed_seconds(user_code, ts),
        "pos": groups.by("user").count_before(),
        "groups": groups,
    }


def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _stat_keys(base: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: base["stat_keys"][k] for k in STAT_KEYS}
