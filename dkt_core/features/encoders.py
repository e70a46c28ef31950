"""Categorical encoders with explicit padding/unknown classes, and a numeric scaler; both JSON-able."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

PAD, UNKNOWN = 0, 1  # reserved codes; known values start at 2


@dataclass
class CategoryEncoder:
    vocab: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, values: np.ndarray | pd.Series) -> CategoryEncoder:
        return cls(vocab=sorted(pd.unique(np.asarray(values).astype(str)).tolist()))

    @property
    def cardinality(self) -> int:
        return len(self.vocab) + 2

    @cached_property
    def _lookup(self) -> dict[str, int]:
        # built once: rebuilding a 12k-value hash table per call dominated small (serving) requests
        return {v: i + 2 for i, v in enumerate(self.vocab)}

    def transform(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Codes of ``values`` (callers pass distinct values, see transform_codes, so this stays small)."""
        get = self._lookup.get
        return np.fromiter((get(str(v), UNKNOWN) for v in np.asarray(values)), dtype=np.int64, count=len(values))

    def transform_codes(self, codes: np.ndarray, uniques: np.ndarray) -> np.ndarray:
        """Encode rows given as (factorized codes, distinct values): string work once per value."""
        return self.transform(uniques)[codes]


@dataclass
class NumericScaler:
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> NumericScaler:
        std = frame.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        return cls(mean=frame.mean().fillna(0.0).to_dict(), std=std.to_dict())

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = list(self.mean)
        mean = np.array([self.mean[c] for c in cols])
        std = np.array([self.std[c] for c in cols])
        values = frame[cols].to_numpy(np.float32)
        values -= mean.astype(np.float32)
        values /= std.astype(np.float32)
        return pd.DataFrame(values, columns=cols, index=frame.index)
