"""Population statistics of items, tests, tags and heads, fit on training users only.

Smoothed accuracy (difficulty) and log popularity per key. On the training rows themselves the values
are *out-of-fold* by user (each user's rows see statistics of the other folds), so a row's own label
never feeds its features; held-out users, evaluation and serving use the full training statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SMOOTHING = 5.0  # pseudo-answers at the global accuracy
STAT_KEYS = ("item", "test", "tag", "head")


@dataclass
class KeyStats:
    """correct/known sums per key (keys are strings, matching the encoders' vocabulary)."""

    keys: list[str]
    correct: list[float]
    known: list[float]

    def lookup(self, values: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
        """(smoothed accuracy, log1p count) for each value; unseen values get the prior and 0."""
        index = {k: i for i, k in enumerate(self.keys)}
        uniq, inv = np.unique(values.astype(str), return_inverse=True)
        pos = np.array([index.get(u, -1) for u in uniq], dtype=np.int64)
        corr = np.where(pos >= 0, np.asarray(self.correct + [0.0])[pos], 0.0)
        known = np.where(pos >= 0, np.asarray(self.known + [0.0])[pos], 0.0)
        acc = (corr + SMOOTHING * prior) / (known + SMOOTHING)
        return acc[inv], np.log1p(known)[inv]


@dataclass
class PopulationStats:
    prior: float = 0.65
    tables: dict[str, KeyStats] = field(default_factory=dict)

    @classmethod
    def fit(cls, keys: dict[str, np.ndarray], answer: np.ndarray) -> PopulationStats:
        known = answer >= 0
        correct = (answer == 1).astype(np.float64)
        prior = float(correct[known].mean()) if known.any() else 0.5
        tables = {}
        for name, values in keys.items():
            uniq, inv = np.unique(values[known].astype(str), return_inverse=True)
            tables[name] = KeyStats(
                keys=uniq.tolist(),
                correct=np.bincount(inv, weights=correct[known], minlength=len(uniq)).tolist(),
                known=np.bincount(inv, minlength=len(uniq)).astype(float).tolist(),
            )
        return cls(prior=prior, tables=tables)

    def transform(self, keys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, values in keys.items():
            acc, cnt = self.tables[name].lookup(values, self.prior)
            out[f"{name}_acc"], out[f"{name}_pop"] = acc, cnt
        return out

    def to_dict(self) -> dict:
        return {"prior": self.prior, "tables": {k: vars(v) for k, v in self.tables.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> PopulationStats:
        return cls(prior=d["prior"], tables={k: KeyStats(**v) for k, v in d["tables"].items()})


def out_of_fold(keys: dict[str, np.ndarray], answer: np.ndarray, user: np.ndarray, folds: int = 5,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Statistics for training rows where each user's rows use only the other folds' users."""
    known = answer >= 0
    correct = (answer == 1).astype(np.float64)
    prior = float(correct[known].mean()) if known.any() else 0.5
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, int(user.max(initial=0)) + 1)[user]
    out = {}
    for name, values in keys.items():
        _, inv = np.unique(values.astype(str), return_inverse=True)
        n = int(inv.max(initial=0)) + 1
        cell = inv * folds + fold
        c_fold = np.bincount(cell, weights=correct * known, minlength=n * folds).reshape(n, folds)
        k_fold = np.bincount(cell, weights=known.astype(float), minlength=n * folds).reshape(n, folds)
        c = c_fold.sum(1)[inv] - c_fold[inv, fold]
        k = k_fold.sum(1)[inv] - k_fold[inv, fold]
        out[f"{name}_acc"] = (c + SMOOTHING * prior) / (k + SMOOTHING)
        out[f"{name}_pop"] = np.log1p(k)
    return out
