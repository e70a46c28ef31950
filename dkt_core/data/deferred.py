"""Columns whose last step is left to whoever writes them.

On millions of rows a feature column's final step is often a pure reordering: a per-key value gathered for
every row (``table[codes]``), or a result computed in a grouping's order put back in row order. Done where
the column is computed, that step allocates a fresh float64 column of the log and moves every value once
more. The feature pipeline writes each column, scaled to float32, into its matrix on a second thread; a
deferred column lets that thread do the step while it writes: it scales the (small) table before
gathering, or scatters the scaled values straight into the matrix column.

Anything else reads a deferred column as the array it stands for: ``np.asarray(column)`` (numpy's
``__array__`` protocol) gives the float64 column in row order, equal bit for bit to the eager step. The
scaling is elementwise, so scaling before the reordering gives the same numbers as after it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# scale(values, out): write the scaled float32 values of ``values`` (any order) into ``out``, elementwise
Scale = Callable[[np.ndarray, np.ndarray], None]


class Deferred:
    """A column in row order whose last step (``materialise``) can be fused with its scaling (``write_scaled``)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def materialise(self) -> np.ndarray:
        raise NotImplementedError

    def write_scaled(self, scale: Scale, out: np.ndarray) -> None:
        """``scale(np.asarray(self), out)``, without the row-order float64 column in between."""
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.materialise()
        return values if dtype is None else values.astype(dtype, copy=False)


class Gathered(Deferred):
    """``table[codes]``: a value per key (a small table) looked up for every row."""

    def __init__(self, table: np.ndarray, codes: np.ndarray):
        self.table, self.codes = np.asarray(table), np.asarray(codes)

    def __len__(self) -> int:
        return len(self.codes)

    def materialise(self) -> np.ndarray:
        return self.table.take(self.codes)

    def write_scaled(self, scale: Scale, out: np.ndarray) -> None:
        scaled = np.empty(len(self.table), dtype=out.dtype)
        scale(self.table, scaled)
        np.take(scaled, self.codes, out=out)


class InGroupOrder(Deferred):
    """``values`` of a grouping's rows in group order: row ``order[i]`` holds ``values[i]``."""

    def __init__(self, values: np.ndarray, order: np.ndarray):
        self.values, self.order = np.asarray(values), order

    def __len__(self) -> int:
        return len(self.values)

    def materialise(self) -> np.ndarray:
        out = np.empty_like(self.values)
        out[self.order] = self.values
        return out

    def write_scaled(self, scale: Scale, out: np.ndarray) -> None:
        scaled = np.empty(len(self.values), dtype=out.dtype)
        scale(self.values, scaled)
        out[self.order] = scaled
