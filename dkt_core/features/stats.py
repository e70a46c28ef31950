"""Population statistics of items, tests, tags and heads, fit on training users only.

Smoothed accuracy (difficulty) and log popularity per key. On the training rows themselves the values
are *out-of-fold* by user (each user's rows see statistics of the other folds), so a row's own label
never feeds its features; held-out users, evaluation and serving use the full training statistics.

Keys arrive factorized, as ``(codes per row, distinct values)``, so the work per row is integer-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from dkt_core.data.deferred import Gathered
from dkt_core.features.encoders import VECTOR_LOOKUP_MIN, as_strings

SMOOTHING = 5.0  # pseudo-answers at the global accuracy
STAT_KEYS = ("item", "test", "tag", "head")

Key = tuple[np.ndarray, np.ndarray]  # (int codes per row, distinct string values)


def _prior(answer: np.ndarray) -> float:
    known = answer >= 0
    return float((answer[known] == 1).mean()) if known.any() else 0.5


def _smoothed(correct: np.ndarray, known: np.ndarray, prior: float) -> np.ndarray:
    return (correct + SMOOTHING * prior) / (known + SMOOTHING)


@dataclass
class KeyStats:
    """correct/known sums per key (keys are strings, matching the encoders' vocabulary)."""

    keys: list[str]
    correct: list[float]
    known: list[float]

    def lookup(self, key: Key, prior: float) -> tuple[Gathered, Gathered]:
        """(smoothed accuracy, log1p count) per row, as per-key tables gathered by the rows' codes (``np.asarray``
        gives the columns); values never seen in training get the prior and 0."""
        codes, uniques = key
        index, correct_all, known_all = self._arrays
        uniques = np.asarray(uniques)
        if len(uniques) > VECTOR_LOOKUP_MIN:
            pos = self._pd_index.get_indexer(as_strings(uniques))
        else:
            get = index.get
            pos = np.fromiter((get(str(u), -1) for u in uniques), dtype=np.int64, count=len(uniques))
        corr = np.where(pos >= 0, correct_all[pos], 0.0)
        known = np.where(pos >= 0, known_all[pos], 0.0)
        return Gathered(_smoothed(corr, known, prior), codes), Gathered(np.log1p(known), codes)

    @cached_property
    def _arrays(self) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
        # built once: per-call rebuilding dominated small (serving) requests
        return {k: i for i, k in enumerate(self.keys)}, np.asarray(self.correct + [0.0]), np.asarray(self.known + [0.0])

    @cached_property
    def _pd_index(self) -> pd.Index:
        return pd.Index(self.keys)

    def to_dict(self) -> dict:
        return {"keys": self.keys, "correct": self.correct, "known": self.known}


@dataclass
class PopulationStats:
    prior: float = 0.65
    tables: dict[str, KeyStats] = field(default_factory=dict)

    @classmethod
    def fit(cls, keys: dict[str, Key], answer: np.ndarray) -> PopulationStats:
        known = (answer >= 0).astype(np.float64)
        correct = (answer == 1).astype(np.float64)
        tables = {}
        for name, (codes, uniques) in keys.items():
            n = len(uniques)
            k = np.bincount(codes, weights=known, minlength=n)
            seen = k > 0
            tables[name] = KeyStats(
                keys=np.asarray(uniques).astype(str)[seen].tolist(),
                correct=np.bincount(codes, weights=correct, minlength=n)[seen].tolist(),
                known=k[seen].tolist(),
            )
        return cls(prior=_prior(answer), tables=tables)

    def transform(self, keys: dict[str, Key]) -> dict[str, Gathered]:
        """``<key>_acc`` and ``<key>_pop`` of every row (deferred gathers: ``np.asarray`` gives the columns)."""
        out = {}
        for name, key in keys.items():
            out[f"{name}_acc"], out[f"{name}_pop"] = self.tables[name].lookup(key, self.prior)
        return out

    def to_dict(self) -> dict:
        return {"prior": self.prior, "tables": {k: v.to_dict() for k, v in self.tables.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> PopulationStats:
        return cls(prior=d["prior"], tables={k: KeyStats(**v) for k, v in d["tables"].items()})


def out_of_fold(keys: dict[str, Key], answer: np.ndarray, user: np.ndarray, folds: int = 5,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Statistics for training rows where each user's rows use only the other folds' users."""
    prior = _prior(answer)
    fold = user_folds(int(user.max(initial=0)) + 1, folds, seed)[user]
    tables = {name: fold_tables(codes, len(uniques), answer, fold, folds) for name, (codes, uniques) in keys.items()}
    return {k: v for name, (codes, _) in keys.items()
            for k, v in zip((f"{name}_acc", f"{name}_pop"), oof_lookup(tables[name], codes, fold, prior), strict=True)}


def user_folds(n_users: int, folds: int, seed: int) -> np.ndarray:
    """The out-of-fold fold of each user (by the user's code: order of first appearance)."""
    return np.random.default_rng(seed).integers(0, folds, n_users)


def fold_tables(codes: np.ndarray, n: int, answer: np.ndarray, fold: np.ndarray, folds: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(correct, known) sums per (key code, fold): (n, folds) arrays. Sums of 0/1 values: exact, so tables of
    chunks add up to the whole log's bit for bit."""
    known = (answer >= 0).astype(np.float64)
    correct = (answer == 1).astype(np.float64)
    cell = codes * folds + fold
    c_fold = np.bincount(cell, weights=correct, minlength=n * folds).reshape(n, folds)
    k_fold = np.bincount(cell, weights=known, minlength=n * folds).reshape(n, folds)
    return c_fold, k_fold


def oof_lookup(tables: tuple[np.ndarray, np.ndarray], codes: np.ndarray, fold: np.ndarray, prior: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(smoothed accuracy, log1p count) of each row's key over the other folds."""
    c_fold, k_fold = tables
    c = c_fold.sum(1)[codes] - c_fold[codes, fold]
    k = k_fold.sum(1)[codes] - k_fold[codes, fold]
    return _smoothed(c, k, prior), np.log1p(k)
