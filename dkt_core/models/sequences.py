"""Turn a feature frame into fixed-length windows of interaction sequences for the torch models.

A *sequence* is a user's history (optionally split by the seed's augmentations: group by user x head x
mid, and cut a user's history every K tests). A sequence longer than ``max_seq_len`` is cut into
*windows*. Everything is vectorised numpy: a batch is an index matrix into the frame's arrays, with one
extra all-zero padding row at the end.

Windows are anchored at the start of the sequence, never at its end, so a row's prediction depends on
its position and its past only — appending rows to a history never changes earlier predictions.
Padding is on the right: with causal models the real positions never see it.

The windows read rows through ``Sequences.gather``: ``SequenceData`` gathers from arrays in memory,
``window_store.WindowStore`` reads the same rows from chunk files on disk (the out-of-core road). Window
boundaries are computed from the sequence boundaries only, so both give the same windows and batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.features.spec import FeatureSpec


class Sequences(Protocol):
    """What windows and batches need: the sequences' boundaries (positions ``[seq_start, seq_end)``; the rows of a
    sequence are consecutive positions, in time order) and a way to gather windows of positions."""

    seq_start: np.ndarray
    seq_end: np.ndarray

    @property
    def n_rows(self) -> int: ...

    def gather(self, start: np.ndarray, end: np.ndarray, width: int) -> Batch:
        """The batch of windows ``[start, end)`` (positions), padded on the right to ``width``."""
        ...

    def labels(self) -> np.ndarray:
        """Each row's label (float32, -1 = unknown) in frame order (the order ``Batch.rows`` indexes)."""
        ...


@dataclass(frozen=True)
class SequenceLayout:
    """How a feature frame is cut into sequences (the ``SeqConfig`` fields that decide it; the window length
    does not: windows are cut when batches are made). Models with equal layouts read the same sequences."""

    group_by: tuple[str, ...] = ()
    split_every_tests: int = 0
    test_column: str = "test"

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_by", tuple(self.group_by))  # a list from JSON: hashable all the same

    def build(self, frame: pd.DataFrame, spec: FeatureSpec) -> SequenceData:
        return build_sequences(frame, spec, group_by=self.group_by, split_every_tests=self.split_every_tests,
                               test_column=self.test_column)


@dataclass
class SequenceData:
    """The arrays of one feature frame, plus the sequences (contiguous ranges of ``order``)."""

    cat: np.ndarray  # (N + 1, C) int64; last row = padding
    num: np.ndarray  # (N + 1, F) float32; last row = padding
    label: np.ndarray  # (N + 1,) float32; -1 = unknown / padding
    order: np.ndarray  # (N,) row indices, grouped by sequence, time order inside a sequence
    seq_start: np.ndarray  # (S,) start of each sequence in ``order``
    seq_end: np.ndarray  # (S,) end (exclusive)

    @property
    def n_rows(self) -> int:
        return len(self.order)

    @property
    def pad_row(self) -> int:
        return self.n_rows

    def gather(self, start: np.ndarray, end: np.ndarray, width: int) -> Batch:
        pos = start[:, None] + np.arange(width)[None, :]
        valid = pos < end[:, None]
        rows = np.where(valid, self.order[np.minimum(pos, self.n_rows - 1)], self.pad_row)
        return Batch(self.cat[rows], self.num[rows], self.label[rows], valid, rows, np.where(valid, pos, -1))

    def labels(self) -> np.ndarray:
        return self.label[:self.n_rows]


def _split_keys(frame: pd.DataFrame, group_by: Sequence[str], split_every_tests: int, test_column: str) -> np.ndarray:
    """One int64 key per row; rows with equal key form one sequence (user x groups x test block)."""
    keys = [pd.factorize(frame[USER], sort=False)[0].astype(np.int64)]
    for col in group_by:
        keys.append(frame[col].to_numpy(np.int64))
    if split_every_tests > 0:
        # Block index = number of test changes seen so far (within user x group) // K.
        partial = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)})
        test = frame[test_column].to_numpy(np.int64)
        grp = partial.groupby(list(partial.columns), sort=False).ngroup().to_numpy()
        prev_test = pd.Series(test).groupby(grp).shift(1).to_numpy()
        changed = (prev_test != test) & ~np.isnan(prev_test)
        n_changes = pd.Series(changed.astype(np.int64)).groupby(grp).cumsum().to_numpy()
        keys.append(n_changes // split_every_tests)
    if len(keys) == 1:
        return keys[0]
    return pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)}).groupby(
        [f"k{i}" for i in range(len(keys))], sort=False).ngroup().to_numpy(np.int64)


def build_sequences(frame: pd.DataFrame, spec: FeatureSpec, *, group_by: Sequence[str] = (),
                    split_every_tests: int = 0, test_column: str = "test") -> SequenceData:
    """Arrays + sequence boundaries of ``frame`` (rows sorted by user then time, as the pipeline gives)."""
    cat_cols = list(spec.categorical)
    needed = cat_cols + list(spec.numeric) + list(group_by) + ([test_column] if split_every_tests > 0 else [])
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise ValueError(f"feature frame lacks column(s) {missing}; was it built by the same FeaturePipeline?")
    n = len(frame)
    cat = np.zeros((n + 1, len(cat_cols)), dtype=np.int64)
    if cat_cols:
        cat[:n] = frame[cat_cols].to_numpy(np.int64)
    num = np.zeros((n + 1, len(spec.numeric)), dtype=np.float32)
    if spec.numeric:
        num[:n] = np.nan_to_num(frame[spec.numeric].to_numpy(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    label = np.full(n + 1, -1.0, dtype=np.float32)
    label[:n] = frame[LABEL].to_numpy(np.float32)

    key = _split_keys(frame, group_by, split_every_tests, test_column)
    order = np.argsort(key, kind="stable")  # stable: keeps time order inside each sequence
    sorted_key = key[order]
    boundaries = np.flatnonzero(np.diff(sorted_key)) + 1
    seq_start = np.concatenate([[0], boundaries]).astype(np.int64) if n else np.zeros(0, np.int64)
    seq_end = np.concatenate([boundaries, [n]]).astype(np.int64) if n else np.zeros(0, np.int64)
    return SequenceData(cat, num, label, order.astype(np.int64), seq_start, seq_end)


def predict_windows(data: Sequences, max_seq_len: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows (start, end, first_written) covering every row exactly once for prediction.

    Window k of a sequence starts at k*stride; it writes positions it is the first window to give at
    least ``max_seq_len - stride`` rows of context (window 0 writes everything it holds), so every row
    is predicted from between ``max_seq_len - stride`` and ``max_seq_len - 1`` previous rows.
    """
    if not 1 <= stride <= max_seq_len:
        raise ValueError(f"stride must be in [1, max_seq_len={max_seq_len}], got {stride}")
    lengths = data.seq_end - data.seq_start
    n_win = 1 + np.maximum(0, -(-(lengths - max_seq_len) // stride))  # ceil division
    seq = np.repeat(np.arange(len(lengths)), n_win)
    k = np.arange(len(seq)) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    start = data.seq_start[seq] + k * stride
    end = np.minimum(start + max_seq_len, data.seq_end[seq])
    first = np.where(k == 0, start, start + max_seq_len - stride)
    return start, end, first


def train_windows(data: Sequences, max_seq_len: int, stride: int, rng: np.random.Generator | None) -> tuple[
        np.ndarray, np.ndarray]:
    """Training windows (start, end): stride windows over every sequence; with ``rng`` every sequence
    gets a random offset in [0, stride) this epoch (random windows), plus its first window."""
    lengths = data.seq_end - data.seq_start
    offset = np.zeros(len(lengths), np.int64)
    if rng is not None:
        offset = rng.integers(0, stride, size=len(lengths)) * (lengths > max_seq_len)
    starts, ends = [], []
    # k = 0 window always starts at the sequence start, so short prefixes are trained too.
    n_win = 1 + np.maximum(0, -(-(lengths - offset - max_seq_len) // stride))
    seq = np.repeat(np.arange(len(lengths)), n_win)
    k = np.arange(len(seq)) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    start = data.seq_start[seq] + np.where(k == 0, 0, offset[seq] + k * stride)
    starts.append(start)
    ends.append(np.minimum(start + max_seq_len, data.seq_end[seq]))
    return np.concatenate(starts), np.concatenate(ends)


@dataclass
class Batch:
    """One padded batch; ``rows`` maps each (b, t) to its frame row (pad_row for padding)."""

    cat: np.ndarray  # (B, T, C)
    num: np.ndarray  # (B, T, F)
    label: np.ndarray  # (B, T)
    valid: np.ndarray  # (B, T) bool, real positions
    rows: np.ndarray  # (B, T)
    pos: np.ndarray  # (B, T) position in ``order`` (-1 for padding)


def make_batch(data: Sequences, start: np.ndarray, end: np.ndarray, max_seq_len: int) -> Batch:
    width = int((end - start).max()) if len(start) else 0
    return data.gather(start, end, min(width, max_seq_len))


def iterate_batches(data: Sequences, start: np.ndarray, end: np.ndarray, batch_size: int, max_seq_len: int,
                    rng: np.random.Generator | None = None) -> Iterator[tuple[Batch, np.ndarray]]:
    """Yield (batch, window indices); shuffled with ``rng``, else sorted by length (less padding)."""
    idx = rng.permutation(len(start)) if rng is not None else np.argsort(end - start, kind="stable")
    for i in range(0, len(idx), batch_size):
        sel = idx[i:i + batch_size]
        yield make_batch(data, start[sel], end[sel], max_seq_len), sel
