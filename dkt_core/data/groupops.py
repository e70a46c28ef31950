"""Vectorised "within group, over previous rows" operations on numpy arrays.

Rows are in time order within each group (the log is sorted per user by time, and every group key
here starts with the user). A ``Grouping`` sorts once (stable) and then answers many questions —
count / sum of previous rows, previous value — in O(n) each, with no per-row Python loop.
"""

from __future__ import annotations

import numpy as np

from dkt_core.data.deferred import Deferred, InGroupOrder


def combine_codes(*codes: np.ndarray) -> np.ndarray:
    """One int64 code per distinct combination of the given non-negative int code arrays."""
    out = np.asarray(codes[0], dtype=np.int64)
    for c in codes[1:]:
        c = np.asarray(c, dtype=np.int64)
        out = out * (int(c.max(initial=0)) + 1)  # a new array: the first codes are not written to
        out += c
    return out if len(codes) > 1 else out.copy()


class Grouping:
    """Row groups defined by ``codes``; all results are returned in the original row order.

    Sums of boolean or integer values are exact integer sums (int64); of floats, float64 sums taken as one
    running sum over the groups in code order (so they are reproducible bit for bit)."""

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes, dtype=np.int64)
        self.n = len(codes)
        if self.n and np.all(codes[1:] >= codes[:-1]):
            self.order = None  # already grouped contiguously (e.g. by user): skip the sort
            sorted_codes = codes
        else:
            self.order = np.argsort(codes, kind="stable")
            sorted_codes = codes[self.order]
        first = np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1
        first = np.concatenate(([0], first)) if self.n else first
        # index (in sorted order) of the first row of each row's group
        self._start = np.repeat(first, np.diff(np.append(first, self.n)))
        self._pos_in_group = np.arange(self.n, dtype=np.int64)
        self._pos_in_group -= self._start

    def grouped(self, values: np.ndarray) -> np.ndarray:
        """``values`` (row order) in group order: what the ``grouped=True`` forms take and return. Computing
        several results in group order and ungrouping only the final one saves a scatter per intermediate."""
        values = np.asarray(values)
        return values if self.order is None else values[self.order]

    def ungroup(self, values: np.ndarray) -> np.ndarray:
        """``values`` in group order back in row order."""
        return values if self.order is None else InGroupOrder(values, self.order).materialise()

    def ungroup_later(self, values: np.ndarray | Deferred) -> np.ndarray | Deferred:
        """``ungroup(values)`` left to whoever writes the column (``dkt_core.data.deferred``): a feature column
        that is only written away need not be put back in row order first."""
        return values if self.order is None else InGroupOrder(values, self.order)

    def count_before(self, *, grouped: bool = False) -> np.ndarray:
        """Number of earlier rows in the same group (read-only: shared, not copied, where no reordering is needed)."""
        if self.order is None or grouped:
            view = self._pos_in_group.view()
            view.flags.writeable = False
            return view
        return self.ungroup(self._pos_in_group)

    def _excl_cumsum(self, v: np.ndarray) -> np.ndarray:
        """Exclusive cumulative sum within each group of ``v`` (group order). Booleans and integers are summed
        exactly: the running sum one row behind, accumulated straight from ``v`` (int32 for booleans: half the
        memory traffic, no converted copy). Floats as one float64 running sum less each row's own value (the
        numbers this has always given, bit for bit)."""
        if v.dtype == bool or np.issubdtype(v.dtype, np.integer):
            dtype = np.int32 if v.dtype == bool and self.n < 2**31 else np.int64
            running = np.empty(self.n + 1, dtype=dtype)
            running[0] = 0
            np.cumsum(v, dtype=dtype, out=running[1:])
            excl = running[:-1]
        else:
            v = v.astype(np.float64, copy=False)
            excl = np.cumsum(v)
            excl -= v
        excl -= excl[self._start]
        return excl

    def sum_before(self, values: np.ndarray, *, grouped: bool = False) -> np.ndarray:
        """Sum of ``values`` over earlier rows of the same group (exclusive cumulative sum)."""
        if grouped:
            return self._excl_cumsum(np.asarray(values))
        return self.ungroup(self._excl_cumsum(self.grouped(values)))

    def window_sum_before(self, values: np.ndarray, window: int, *, grouped: bool = False) -> np.ndarray:
        """Sum of ``values`` over the previous ``window`` rows of the same group."""
        excl = self._excl_cumsum(np.asarray(values) if grouped else self.grouped(values))
        out = self.window_of(excl, window)
        return out if grouped else self.ungroup(out)

    def window_of(self, excl: np.ndarray, window: int) -> np.ndarray:
        """``window_sum_before`` (group order) from the group's exclusive sums ``sum_before(values, grouped=True)``:
        the sums less the sums ``window`` rows earlier, where the group has that many earlier rows."""
        out = excl.copy()
        if window < self.n:
            np.subtract(excl[window:], excl[:-window], out=out[window:], where=self._pos_in_group[window:] >= window)
        return out

    def previous(self, values: np.ndarray, fill, *, grouped: bool = False) -> np.ndarray:
        """The value of the previous row of the same group (``fill`` for a group's first row)."""
        v = np.asarray(values) if grouped else self.grouped(values)
        out = np.empty_like(v)
        out[1:] = v[:-1]
        out[self._pos_in_group == 0] = fill
        return out if grouped else self.ungroup(out)

    def last_where_before(self, mask: np.ndarray, values: np.ndarray, fill) -> np.ndarray:
        """Value of ``values`` at the most recent earlier row of the group where ``mask`` is true."""
        m = self.grouped(np.asarray(mask, dtype=bool))
        v = self.grouped(values)
        # index of the latest masked row at or before each row, then shift to "strictly before"
        latest = np.arange(self.n, dtype=np.int64)
        latest[~m] = -1
        np.maximum.accumulate(latest, out=latest)
        before = np.empty(self.n, dtype=np.int64)
        before[:1] = -1
        before[1:] = latest[:-1]
        del latest
        out = v.take(before).astype(np.result_type(v.dtype, np.asarray(fill).dtype), copy=False)
        out[before < self._start] = fill  # none in this group (-1 reads the last row above: overwritten here)
        return self.ungroup(out)


class UserGroupings:
    """Row groupings by user and by user x key, each built (sorted) once and shared by every feature
    family that needs it."""

    def __init__(self, user: np.ndarray):
        self.user = user
        self._cache: dict[str, Grouping] = {}

    def by(self, name: str, key: np.ndarray | None = None) -> Grouping:
        """The grouping ``name`` (``"user"``, or user x ``key`` for any other name)."""
        if name not in self._cache:
            self._cache[name] = Grouping(self.user if key is None else combine_codes(self.user, key))
        return self._cache[name]

    def release(self, name: str) -> None:
        """Forget the grouping ``name`` (its arrays are as large as the log; built again if asked for)."""
        self._cache.pop(name, None)
