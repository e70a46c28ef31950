"""Columns whose last steps are left to whoever writes them.

The feature pipeline writes each column, scaled to float32, into its matrix on a second thread. A deferred
column hands that thread its last steps, so the thread that computes columns can go on to the next one:

- ``Computed``: an elementwise function of arrays already in hand (a log, a smoothed ratio of two counts);
- ``Gathered``: a per-key value looked up for every row; the writer scales the (small) table before gathering;
- ``InGroupOrder``: a result computed in a grouping's order; the writer scatters the scaled values straight
  into the matrix column instead of a fresh float64 column put back in row order first.

They nest: an ``InGroupOrder`` of a ``Computed`` computes, scales and scatters on the writer. Arrays given to a
deferred column must not be changed afterwards (it reads them later, on another thread).

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
        """``scale(np.asarray(self), out)``, where possible without the row-order float64 column in between."""
        scale(self.materialise(), out)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.materialise()
        return values if dtype is None else values.astype(dtype, copy=False)


class Computed(Deferred):
    """``func(*args)``: a column computed from arrays of the same length (the first one gives the length)."""

    def __init__(self, func: Callable[..., np.ndarray], *args: np.ndarray | float):
        self.func, self.args = func, args

    def __len__(self) -> int:
        return len(self.args[0])

    def materialise(self) -> np.ndarray:
        return self.func(*self.args)


class Gathered(Deferred):
    """``table[codes]``: a value per key (a small table) looked up for every row."""

    def __init__(self, table: np.ndarray, codes: np.ndarray):
        self.table, self.codes = np.asarray(table), np.asarray(codes)

    def __len__(self) -> int:
        return len(self.codes)

    def materialise(self) -> np.ndarray:
        return self.table.take(self.codes)

    def write_scaled(self, scale: Scale, out: np.ndarray) -> None:
        if len(self.codes) < len(self.table):  # fewer rows than keys (a serving request): gather first
            scale(self.materialise(), out)
            return
        scaled = np.empty(len(self.table), dtype=out.dtype)
        scale(self.table, scaled)
        np.take(scaled, self.codes, out=out)


class InGroupOrder(Deferred):
    """``values`` of a grouping's rows in group order: row ``order[i]`` holds ``values[i]``."""

    def __init__(self, values: np.ndarray | Deferred, order: np.ndarray):
        self.values, self.order = values if isinstance(values, Deferred) else np.asarray(values), order

    def __len__(self) -> int:
        return len(self.values)

    def materialise(self) -> np.ndarray:
        values = np.asarray(self.values)
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def write_scaled(self, scale: Scale, out: np.ndarray) -> None:
        scaled = np.empty(len(self.values), dtype=out.dtype)
        scale(np.asarray(self.values), scaled)
        out[self.order] = scaled
