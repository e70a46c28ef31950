"""LightGBM on the engineered past-only features (the seed's tabular model, with Elo features).

Two ways in: ``fit`` from feature frames in memory, and ``fit_chunks`` from feature chunks on disk (the
out-of-core road, ``dkt_core.training.stream``): LightGBM builds its Dataset from ``lgb.Sequence`` objects over
memory-mapped float32 arrays, sampling rows for the bin boundaries and then pushing the chunks batch by batch, so
the feature matrix is never one array in memory (only LightGBM's binned copy, ~1 byte per value, is).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL
from dkt_core.features.spec import FeatureSpec
from dkt_core.models.base import DKTModel, FitResult
from dkt_core.models.window_store import npy_header

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
    # A log of tens of millions of rows: each tree is grown on at most this many bagged rows, and early
    # stopping watches at most about this many validation rows (whole chunks, evenly spread). On the 92 M-row
    # log the validation AUC moved 0.7954 -> 0.7958 from round 50 to 200 with 73 M rows per tree
    # (docs/benchmarks.md): past a few million rows a tree gains nothing from more, while each round's time
    # (10-14 s there) grows with them. Below both caps nothing changes.
    max_bagged_rows: int = 8_000_000
    max_valid_rows: int = 2_000_000


class LGBMModel(DKTModel):
    name = "lgbm"
    Config = LGBMConfig

    def __init__(self, config: LGBMConfig | None = None, spec: FeatureSpec | None = None):
        super().__init__(config, spec)
        self.booster = None

    def _params(self, seed: int, train_rows: int) -> dict:
        c = self.config
        large = train_rows > c.max_bagged_rows
        return {
            "objective": "binary", "metric": "auc", "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves, "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction, "bagging_freq": 1,
            "bagging_fraction": min(c.bagging_fraction, c.max_bagged_rows / train_rows) if large else c.bagging_fraction,
            "lambda_l2": c.lambda_l2, "num_threads": c.num_threads, "seed": seed, "deterministic": True,
            # row-wise histograms are the faster layout here, but LightGBM keeps a second, row-wise copy of
            # the binned data for them: a large log takes the column-wise layout and one copy
            "force_col_wise" if large else "force_row_wise": True, "verbosity": -1,
            # LightGBM pre-filters unsplittable features differently when its Dataset comes from chunks
            # (Sequence) than from one matrix; without the pre-filter both give the same Dataset, byte for byte
            "feature_pre_filter": False,
        }

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, spec: FeatureSpec, *, seed: int = 0,
            progress: bool = True) -> FitResult:
        import lightgbm as lgb

        self.spec = spec
        start = time.perf_counter()
        tr, va = train[train[LABEL] >= 0], valid[valid[LABEL] >= 0]
        dtrain = lgb.Dataset(tr[spec.tabular].to_numpy(np.float32), tr[LABEL].to_numpy(), free_raw_data=True)
        dvalid = lgb.Dataset(va[spec.tabular].to_numpy(np.float32), va[LABEL].to_numpy(), reference=dtrain)
        return self._train(dtrain, dvalid, self._params(seed, len(tr)), progress, start)

    def fit_chunks(self, train: Sequence[FeatureChunk], valid: Sequence[FeatureChunk], spec: FeatureSpec, *,
                   seed: int = 0, progress: bool = True) -> FitResult:
        """Train from feature chunks on disk (labelled rows only; the model is the one ``fit`` would train on
        the concatenated rows: the same bins, from the same sampled rows, and the same rows in the same order)."""
        import lightgbm as lgb

        self.spec = spec
        start = time.perf_counter()
        width = len(spec.tabular)
        for chunk in (*train, *valid):
            chunk.check(width)
        labels = _labels(train)
        params = self._params(seed, len(labels))
        valid = watched_chunks(valid, self.config.max_valid_rows)
        dtrain = lgb.Dataset([_sequence(c) for c in train], label=labels, free_raw_data=True, params=params)
        dvalid = lgb.Dataset([_sequence(c) for c in valid], label=_labels(valid), reference=dtrain)
        return self._train(dtrain, dvalid, params, progress, start)

    def _train(self, dtrain, dvalid, params: dict, progress: bool, start: float) -> FitResult:
        import lightgbm as lgb

        history: dict = {}
        callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False),
                     lgb.record_evaluation(history)]
        if progress:
            callbacks.append(lgb.log_evaluation(50))
        self.booster = lgb.train(params, dtrain, self.config.num_boost_round,
                                 valid_sets=[dvalid], valid_names=["valid"], callbacks=callbacks)
        aucs = history.get("valid", {}).get("auc", [])
        return FitResult(
            seconds=time.perf_counter() - start,
            best_iteration=int(self.booster.best_iteration or len(aucs)),
            valid_auc=float(max(aucs)) if aucs else None,
            history=[{"round": i + 1, "valid_auc": a} for i, a in enumerate(aucs) if (i + 1) % 25 == 0],
        )

    def predict_chunk(self, chunk: FeatureChunk) -> np.ndarray:
        """P(correct) of every row of a feature chunk on disk."""
        if self.booster is None:
            raise RuntimeError("lgbm model is not fit")
        x = chunk.features()
        threads = 1 if len(x) < SMALL_BATCH_ROWS else self.config.num_threads
        return self.booster.predict(x, num_iteration=self.booster.best_iteration or None,
                                    num_threads=threads).astype(np.float64)

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


@dataclass(frozen=True)
class FeatureChunk:
    """One chunk of a feature matrix on disk: ``x`` a C-ordered (rows, features) float32 .npy file in the order
    of ``FeatureSpec.tabular`` (``np.save(path, np.ascontiguousarray(matrix))``), ``y`` the labels (.npy, 0/1)."""

    x: Path
    y: Path

    def features(self) -> np.ndarray:
        return np.load(self.x, mmap_mode="r", allow_pickle=False)

    def labels(self) -> np.ndarray:
        return np.load(self.y, allow_pickle=False)

    def check(self, width: int) -> None:
        x = self.features()
        if (x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != width or not x.flags.c_contiguous
                or len(self.labels()) != len(x)):
            raise ValueError(f"{self.x}: expected a C-ordered float32 (rows, {width}) array with one label per row "
                             f"in {self.y}, got {x.dtype} {x.shape}{'' if x.flags.c_contiguous else ' (Fortran order)'}")


SEQUENCE_BATCH_ROWS = 65_536  # rows LightGBM pushes per call when it reads a chunk


def _sequence(chunk: FeatureChunk):
    import lightgbm as lgb

    class _Chunk(lgb.Sequence):
        """A chunk read with positioned reads (LightGBM asks for sampled rows, then slices of ``batch_size``
        rows). No memory map: the pages of a mapped file count as the process's memory until it is unmapped,
        and LightGBM keeps every chunk's object alive until its Dataset is built."""

        batch_size = SEQUENCE_BATCH_ROWS

        def __init__(self, path: Path) -> None:
            self.path = path
            shape, dtype, self.offset = npy_header(path)  # ValueError for a Fortran-ordered array
            if dtype != np.float32 or len(shape) != 2:
                raise ValueError(f"{path}: expected a C-ordered float32 matrix, got {dtype} {shape}")
            self.rows, self.width = shape
            self.row_bytes = self.width * 4

        def _read(self, start: int, stop: int) -> np.ndarray:
            with self.path.open("rb") as f:
                data = os.pread(f.fileno(), (stop - start) * self.row_bytes, self.offset + start * self.row_bytes)
            return np.frombuffer(data, dtype=np.float32).reshape(stop - start, self.width)

        def __getitem__(self, idx):
            if isinstance(idx, slice):  # a batch to push: float32, as stored
                start, stop, step = idx.indices(self.rows)
                if step != 1:
                    raise ValueError("only contiguous slices are read")
                return self._read(start, max(start, stop))
            if idx < 0:
                idx += self.rows
            return self._read(idx, idx + 1)[0].astype(np.float64)  # a sampled row: LightGBM samples doubles

        def __len__(self) -> int:
            return self.rows

    return _Chunk(chunk.x)


def watched_chunks(chunks: Sequence[FeatureChunk], max_rows: int) -> list[FeatureChunk]:
    """The validation chunks early stopping watches: all of them up to ``max_rows`` rows, else every k-th chunk
    (evenly spread over the log, whose chunks follow the users' first appearance) with about ``max_rows`` rows."""
    rows = [len(c.labels()) for c in chunks]
    total = sum(rows)
    if total <= max_rows:
        return list(chunks)
    step = -(-total // max_rows)  # ceil: at most ~max_rows rows
    return list(chunks[::step])


def _labels(chunks: Sequence[FeatureChunk]) -> np.ndarray:
    return np.concatenate([c.labels().astype(np.float32) for c in chunks]) if chunks else np.zeros(0, np.float32)
