"""The feature pipeline over a log stored as chunks of whole users: the same features, never the whole log.

Every history feature is computed within a user, so a chunk of whole users gets exactly the values the
whole log would give its rows. What spans users is fitted in passes over the chunks instead of at once:

- pass 1 (cheap, integer work): encoder vocabularies, the population statistics and the out-of-fold
  tables (sums of 0/1 values per key and fold: exactly the whole log's), each item's test;
- pass 2: the numeric features of each training chunk, folded into the scaler's mean and variance
  (Chan's parallel update: equal to numpy's whole-array mean/std up to float rounding, ~1e-15 relative);
- pass 3: the feature frame of each chunk, yielded one at a time (``transform_train`` for the training
  users with their out-of-fold statistics; ``transform`` for anyone else with the stored statistics).

The results equal ``FeaturePipeline.fit_transform`` / ``transform`` on the concatenated chunks: codes and
labels bit for bit; the float32 numerics bit for bit except the two residual features (a running sum of
non-integer values starts at each chunk instead of at the log's first row: they may differ by one float32
step). Tested in tests/unit/test_out_of_core.py and tests/realdata/test_out_of_core_real.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.features.encoders import CategoryEncoder, NumericScaler
from dkt_core.features.ids import decompose_items
from dkt_core.features.pipeline import (
    ENCODED,
    NUMERIC,
    FeaturePipeline,
    _base_columns,
    _factorize,
    _stat_keys,
)
from dkt_core.features.stats import STAT_KEYS, KeyStats, PopulationStats, fold_tables, oof_lookup, user_folds

Frames = Callable[[], Iterable[pd.DataFrame]]  # a fresh iterator over the chunks on each call


def item_tests(frames: Iterable[pd.DataFrame]) -> dict[str, str]:
    """Each item's test: the test of its first row over ``frames`` in order (what ``_base_columns`` takes
    from a whole frame's first row)."""
    out: dict[str, str] = {}
    for frame in frames:
        item, test = _factorize(frame["assessmentItemID"]), _factorize(frame["testId"])
        first_row = np.zeros(len(item[1]), dtype=np.int64)
        first_row[item[0][::-1]] = np.arange(len(frame))[::-1]
        for i, t in zip(item[1], test[1][test[0][first_row]], strict=True):
            out.setdefault(i, t)
    return out


@dataclass
class ChunkedFit:
    """What fitting on chunks learns beyond the pipeline's stored state: the training rows' out-of-fold
    statistics need it (the ids of each key in order of first appearance, the per-fold tables, each user's
    fold) and each item's test among the training users."""

    key_ids: dict[str, dict[str, int]]
    tables: dict[str, tuple[np.ndarray, np.ndarray]]
    user_fold: np.ndarray
    item_test: dict[str, str]
    prior: float
    chunk_users: list[int] = field(default_factory=list)


class _Folds:
    """Each user's out-of-fold fold, drawn as ``user_folds`` draws them for the whole log. The number of users
    is known only at the end, so draws are made for a bound that doubles when passed: numpy's bounded
    integers are drawn one after another, so the first n of N draws are the n draws (tested)."""

    def __init__(self, folds: int, seed: int) -> None:
        self.folds, self.seed = folds, seed
        self.drawn = user_folds(1 << 16, folds, seed)

    def of(self, users: np.ndarray) -> np.ndarray:
        need = int(users.max(initial=-1)) + 1
        if need > len(self.drawn):
            self.drawn = user_folds(max(need, 2 * len(self.drawn)), self.folds, self.seed)
        return self.drawn[users]


class Moments:
    """Count, mean and M2 of each column over chunks (NaN ignored), merged with Chan's update. ``of`` one chunk
    and ``merge`` in chunk order give the same numbers wherever each chunk's part was computed."""

    def __init__(self) -> None:
        self.n: dict[str, float] = {}
        self.mean: dict[str, float] = {}
        self.m2: dict[str, float] = {}

    @classmethod
    def of(cls, columns: dict[str, np.ndarray]) -> Moments:
        out = cls()
        for c, v in columns.items():
            ok = ~np.isnan(v)
            x = v if ok.all() else v[ok]
            out.n[c] = float(len(x))
            out.mean[c] = float(np.mean(x)) if len(x) else 0.0
            out.m2[c] = float(np.sum((x - out.mean[c]) ** 2)) if len(x) else 0.0
        return out

    @classmethod
    def of_columns(cls, columns: Iterable[tuple[str, np.ndarray]]) -> Moments:
        """``of`` a chunk's columns given one at a time (each can be dropped once counted), in ``NUMERIC`` order."""
        parts = [cls.of({c: np.asarray(v)}) for c, v in columns]  # deferred columns (features.pipeline) as arrays
        out = cls()
        for field_ in ("n", "mean", "m2"):
            merged = {c: x for part in parts for c, x in getattr(part, field_).items()}
            setattr(out, field_, {c: merged[c] for c in NUMERIC if c in merged})
        return out

    def merge(self, other: Moments) -> None:
        for c, nb in other.n.items():
            na, ma, m2a = self.n.get(c, 0.0), self.mean.get(c, 0.0), self.m2.get(c, 0.0)
            n = na + nb
            if nb == 0:
                self.n[c], self.mean[c], self.m2[c] = na, ma, m2a
                continue
            delta = other.mean[c] - ma
            self.n[c], self.mean[c] = n, ma + delta * nb / n
            self.m2[c] = m2a + other.m2[c] + delta * delta * na * nb / n

    def scaler(self) -> NumericScaler:
        # the same rule as NumericScaler.fit: empty -> 0 / 1, a zero or non-finite std -> 1
        mean = {c: self.mean[c] if self.n[c] else 0.0 for c in self.n}
        std = {c: float(np.sqrt(self.m2[c] / self.n[c])) if self.n[c] else 1.0 for c in self.n}
        return NumericScaler(mean=mean, std={c: s if np.isfinite(s) and s > 0 else 1.0 for c, s in std.items()})


def fit(pipeline: FeaturePipeline, frames: Frames) -> ChunkedFit:
    """Fit ``pipeline`` (encoders, statistics, scaler) on the training chunks ``frames()`` (labelled rows of
    the training users, in order): the state ``pipeline.fit_transform`` of their concatenation would fit."""
    state = fit_statistics(pipeline, frames)
    moments = Moments()
    for k, frame in enumerate(frames()):  # pass 2: the scaler
        moments.merge(train_moments(pipeline, state, frame, k))
    pipeline.scaler = moments.scaler()
    return state


def fit_statistics(pipeline: FeaturePipeline, frames: Frames) -> ChunkedFit:
    """Pass 1 of ``fit``: encoders and population statistics (the scaler is left unset; fit it from
    ``Moments.of(train_numeric(...))`` of every training chunk, merged in order)."""
    cfg = pipeline.config
    key_ids: dict[str, dict[str, int]] = {k: {} for k in STAT_KEYS}
    sums: dict[str, list[np.ndarray]] = {k: [np.zeros((0, cfg.oof_folds)), np.zeros((0, cfg.oof_folds))]
                                         for k in STAT_KEYS}
    item_test: dict[str, str] = {}
    chunk_users: list[int] = []
    tag_values: dict[str, None] = {}
    correct = known = 0.0
    folds = _Folds(cfg.oof_folds, cfg.seed)
    n_users = 0
    for frame in frames():  # pass 1
        item, test, tag = (_factorize(frame[c]) for c in ("assessmentItemID", "testId", "KnowledgeTag"))
        for t in tag[1]:
            tag_values.setdefault(t, None)
        first_row = np.zeros(len(item[1]), dtype=np.int64)
        first_row[item[0][::-1]] = np.arange(len(frame))[::-1]
        for i, t in zip(item[1], test[1][test[0][first_row]], strict=True):
            item_test.setdefault(i, t)
        head = decompose_items(item[1], np.array([item_test[i] for i in item[1]], dtype=object))["head"]
        head_of_item, head_uniques = _factorize(pd.Series(head))
        keys = {"item": item, "test": test, "tag": tag, "head": (head_of_item[item[0]], head_uniques)}
        user_code = pd.factorize(frame[USER])[0].astype(np.int64)
        answer = frame[LABEL].to_numpy().astype(np.int64)
        correct += float(np.count_nonzero(answer == 1))
        known += float(np.count_nonzero(answer >= 0))
        fold = folds.of(user_code + n_users)
        chunk_users.append(int(user_code.max(initial=-1)) + 1)
        n_users += chunk_users[-1]
        for name in STAT_KEYS:
            codes, uniques = keys[name]
            ids = key_ids[name]
            gid = np.fromiter((ids.setdefault(u, len(ids)) for u in uniques), np.int64, len(uniques))[codes]
            acc = sums[name]
            for j, t in enumerate(fold_tables(gid, len(ids), answer, fold, cfg.oof_folds)):
                if len(acc[j]) < len(t):
                    acc[j] = np.vstack([acc[j], np.zeros((len(t) - len(acc[j]), cfg.oof_folds))])
                acc[j] += t
    user_fold = folds.of(np.arange(n_users))
    prior = correct / known if known else 0.5
    tables = {k: (sums[k][0], sums[k][1]) for k in STAT_KEYS}
    pipeline.stats = PopulationStats(prior=prior, tables={
        name: _key_stats(list(key_ids[name]), *tables[name]) for name in STAT_KEYS})
    parts = decompose_items(np.array(list(item_test), dtype=object), np.array(list(item_test.values()), dtype=object))
    vocab = {"item": np.array(list(key_ids["item"]), dtype=object), "test": np.array(list(key_ids["test"]), dtype=object),
             "tag": np.array(list(tag_values), dtype=object)}
    vocab.update({c: parts[c] for c in ("head", "mid", "tail", "mid_tail")})
    pipeline.encoders = {c: CategoryEncoder.fit(vocab[c]) for c in ENCODED}
    pipeline.scaler = None
    return ChunkedFit(key_ids, tables, user_fold, item_test, prior, chunk_users)


def _key_stats(keys: list[str], c_fold: np.ndarray, k_fold: np.ndarray) -> KeyStats:
    k = k_fold.sum(1)
    seen = k > 0
    return KeyStats(keys=[str(v) for v, s in zip(keys, seen, strict=True) if s],
                    correct=c_fold.sum(1)[seen].tolist(), known=k[seen].tolist())


def train_numeric(pipeline: FeaturePipeline, state: ChunkedFit, frame: pd.DataFrame, index: int
                  ) -> tuple[dict, dict[str, np.ndarray]]:
    """(base columns, unscaled numeric features) of training chunk number ``index`` (out-of-fold statistics)."""
    base = _base_columns(frame, state.item_test)
    return base, pipeline._numeric(base, _train_pop(state, base, index), vectorised_elo=True)


def _train_pop(state: ChunkedFit, base: dict, index: int) -> dict[str, np.ndarray]:
    """The out-of-fold population statistics of training chunk number ``index``'s rows."""
    fold = state.user_fold[base["user_code"] + sum(state.chunk_users[:index])]
    pop = {}
    for name, (codes, uniques) in _stat_keys(base).items():
        ids = state.key_ids[name]
        gid = np.fromiter((ids[u] for u in uniques), np.int64, len(uniques))[codes]
        pop[f"{name}_acc"], pop[f"{name}_pop"] = oof_lookup(state.tables[name], gid, fold, state.prior)
    return pop


def train_moments(pipeline: FeaturePipeline, state: ChunkedFit, frame: pd.DataFrame, index: int) -> Moments:
    """``Moments.of(train_numeric(...)[1])`` of training chunk number ``index`` (the scaler's pass), with one float64
    column alive at a time instead of all of them."""
    base = _base_columns(frame, state.item_test)
    return Moments.of_columns(pipeline._numeric_columns(base, _train_pop(state, base, index), vectorised_elo=True))


def train_matrix(pipeline: FeaturePipeline, state: ChunkedFit, frame: pd.DataFrame, index: int
                 ) -> tuple[dict, np.ndarray]:
    """(base columns, scaled float32 numeric matrix) of training chunk number ``index``: ``train_numeric``
    through the fitted scaler, each column scaled as it is computed (a few float64 columns alive, not all)."""
    base = _base_columns(frame, state.item_test)
    return base, pipeline._matrix(base, _train_pop(state, base, index), vectorised_elo=True)


def numeric(pipeline: FeaturePipeline, frame: pd.DataFrame, item_test: dict[str, str]
            ) -> tuple[dict, dict[str, np.ndarray]]:
    """(base columns, unscaled numeric features) of a chunk of other users (the stored statistics)."""
    if pipeline.stats is None:
        raise RuntimeError("FeaturePipeline must be fit (or loaded) before transform")
    base = _base_columns(frame, item_test)
    return base, pipeline._numeric(base, pipeline.stats.transform(_stat_keys(base)), vectorised_elo=True)


def matrix(pipeline: FeaturePipeline, frame: pd.DataFrame, item_test: dict[str, str]) -> tuple[dict, np.ndarray]:
    """(base columns, scaled float32 numeric matrix) of a chunk of other users: ``numeric`` through the
    scaler, column by column."""
    if pipeline.stats is None or pipeline.scaler is None:
        raise RuntimeError("FeaturePipeline must be fit (or loaded) before transform")
    base = _base_columns(frame, item_test)
    return base, pipeline._matrix(base, pipeline.stats.transform(_stat_keys(base)), vectorised_elo=True)


def frame_of(pipeline: FeaturePipeline, frame: pd.DataFrame, base: dict, x: np.ndarray) -> pd.DataFrame:
    """The feature frame of a chunk from its base columns and scaled matrix (``train_matrix`` / ``matrix``): the
    rows ``fit_transform`` / ``transform`` give for it, without computing its features again."""
    return pipeline._assemble(frame, base, x)


def _train_matrices(pipeline: FeaturePipeline, state: ChunkedFit, frames: Frames
                    ) -> Iterator[tuple[pd.DataFrame, dict, np.ndarray]]:
    for k, frame in enumerate(frames()):
        yield frame, *train_matrix(pipeline, state, frame, k)


def transform_train(pipeline: FeaturePipeline, state: ChunkedFit, frames: Frames) -> Iterator[pd.DataFrame]:
    """Feature frames of the training chunks (out-of-fold statistics), one per chunk: together the rows of
    ``fit_transform`` on their concatenation."""
    for frame, base, x in _train_matrices(pipeline, state, frames):
        yield frame_of(pipeline, frame, base, x)


def transform_train_matrices(pipeline: FeaturePipeline, state: ChunkedFit, frames: Frames
                             ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """(chunk, its scaled numeric matrix): the ``FeatureSpec.tabular`` columns of ``transform_train``'s frame
    as one float32 (rows, columns) array, without building the frame (what a tree model reads)."""
    for frame, _, x in _train_matrices(pipeline, state, frames):
        yield frame, x


def transform(pipeline: FeaturePipeline, frames: Frames, item_test: dict[str, str] | None = None
              ) -> Iterator[pd.DataFrame]:
    """Feature frames of other users' chunks with the stored statistics: together the rows of
    ``pipeline.transform`` on their concatenation. ``item_test``: ``item_tests(frames())`` (computed here
    when not given)."""
    for frame, base, x in _matrices(pipeline, frames, item_test):
        yield frame_of(pipeline, frame, base, x)


def transform_matrices(pipeline: FeaturePipeline, frames: Frames, item_test: dict[str, str] | None = None
                       ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """(chunk, its scaled numeric matrix) for ``transform``'s chunks, as ``transform_train_matrices``."""
    for frame, _, x in _matrices(pipeline, frames, item_test):
        yield frame, x


def _matrices(pipeline: FeaturePipeline, frames: Frames, item_test: dict[str, str] | None
              ) -> Iterator[tuple[pd.DataFrame, dict, np.ndarray]]:
    if pipeline.stats is None or pipeline.scaler is None:
        raise RuntimeError("FeaturePipeline must be fit (or loaded) before transform")
    if item_test is None:
        item_test = item_tests(frames())
    for frame in frames():
        yield frame, *matrix(pipeline, frame, item_test)
