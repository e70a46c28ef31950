"""Categorical encoders with explicit padding/unknown classes, and a numeric scaler; both JSON-able."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from dkt_core.data.deferred import Deferred

PAD, UNKNOWN = 0, 1  # reserved codes; known values start at 2
VECTOR_LOOKUP_MIN = 500  # above this many values a pandas index lookup beats a Python dict loop


def as_strings(values: np.ndarray) -> np.ndarray:
    """``values.astype(str)`` for a lookup in an index of strings; an object array that holds only strings is
    used as it is (converting it to a fixed-width array only for pandas to convert it back cost 2x the lookup)."""
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values
    return values.astype(str)


@dataclass
class CategoryEncoder:
    vocab: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, values: np.ndarray | pd.Series) -> CategoryEncoder:
        return cls(vocab=sorted(pd.unique(np.asarray(values).astype(str)).tolist()))

    @property
    def cardinality(self) -> int:
        return len(self.vocab) + 2

    # Lookups are built once (rebuilding a 12k-value hash table per call dominated small serving
    # requests): a dict for a few values, pandas' vectorised hash index for many.
    @cached_property
    def _lookup(self) -> dict[str, int]:
        return {v: i + 2 for i, v in enumerate(self.vocab)}

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.vocab)

    def transform(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Codes of ``values`` (callers pass distinct values, see transform_codes)."""
        values = np.asarray(values)
        if len(values) > VECTOR_LOOKUP_MIN:
            codes = self._index.get_indexer(as_strings(values))
            return np.where(codes >= 0, codes + 2, UNKNOWN).astype(np.int64)
        get = self._lookup.get
        return np.fromiter((get(str(v), UNKNOWN) for v in values), dtype=np.int64, count=len(values))

    def transform_codes(self, codes: np.ndarray, uniques: np.ndarray) -> np.ndarray:
        """Encode rows given as (factorized codes, distinct values): string work once per value."""
        return self.transform(uniques)[codes]


@dataclass
class NumericScaler:
    """Standardisation fit on training rows; columns keep the order they were fit in."""

    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, columns: dict[str, np.ndarray]) -> NumericScaler:
        moments = {c: cls.moments(v) for c, v in columns.items()}
        return cls(mean={c: m for c, (m, _) in moments.items()}, std={c: s for c, (_, s) in moments.items()})

    @staticmethod
    def moments(values: np.ndarray) -> tuple[float, float]:
        """(mean, std) of one column as ``fit`` stores them (NaN ignored; empty -> 0 / 1, a zero or non-finite
        std -> 1)."""
        if not len(values):
            return 0.0, 1.0
        if np.isnan(values).any():
            mean, std = float(np.nanmean(values)), float(np.nanstd(values))
        else:  # the same sums as the NaN-aware forms (which copy the column twice to mask nothing)
            mean, std = float(np.mean(values)), float(np.std(values))
        return mean, std if np.isfinite(std) and std > 0 else 1.0

    def transform(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(rows, columns) float32 matrix of the scaled columns, in fit order."""
        cols = list(self.mean)
        # column-major: each column is written contiguously, and pandas can wrap it without a copy
        out = np.empty((len(columns[cols[0]]) if cols else 0, len(cols)), dtype=np.float32, order="F")
        for j, c in enumerate(cols):
            self.transform_column(c, columns[c], out[:, j])
        return out

    def transform_column(self, name: str, values: np.ndarray | Deferred, out: np.ndarray) -> None:
        """Write the scaled float32 ``values`` of column ``name`` into ``out`` (in place: no temporary). A deferred
        column's gather or reordering is done on the scaled values (the same numbers: scaling is elementwise)."""
        mean, std = np.float32(self.mean[name]), np.float32(self.std[name])

        def scale(v: np.ndarray, o: np.ndarray) -> None:
            # float32(value) - float32(mean), / float32(std): the cast is done inside the subtraction (one pass less)
            np.subtract(v, mean, out=o, dtype=np.float32, casting="unsafe")
            o /= std

        if isinstance(values, Deferred):
            values.write_scaled(scale, out)
        else:
            scale(values, out)
