"""Sequence windows read from disk: what the torch sequence models train on out of core (issue 15 item 3).

``write_chunk`` turns one feature frame of whole users (a chunk of the out-of-core road) into two files:

- ``<stem>.rows.npy``: the chunk's rows in *sequence order* (``SequenceLayout.build``, the code the in-memory
  road runs), one fixed-size record each: ``cat`` (C int32 codes), ``num`` (F float32 numerics, NaN/inf as 0),
  ``label`` (float32, -1 unknown) and ``row`` (int32, the row's index in the chunk's frame);
- ``<stem>.seq.npy``: the sequences' ``[start, end)`` in those records, int64 (S, 2).

``WindowStore`` puts chunks one after another: position p of chunk k is position ``offset[k] + p`` of the store,
frame row ``offset[k] + row``. Sequences never cross a chunk (a chunk holds whole users and a sequence is part of
one user), so the store's positions and sequences are those ``build_sequences`` gives the concatenated frame, and
the windows cut from them (``sequences.train_windows`` / ``predict_windows``, the shared code) are the same.

Only the sequence boundaries (16 bytes a sequence) live in memory. ``gather`` reads a batch's windows with one
positioned read (``os.pread``) per window: each window is a run of consecutive records. No memory map: the
pages of a mapped file count as the process's resident memory until it is unmapped, and shuffled windows touch
every page in an epoch; read pages stay in the kernel's page cache instead, which it can drop.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.features.spec import FeatureSpec
from dkt_core.models.sequences import Batch, SequenceLayout

LABEL_BLOCK_ROWS = 1 << 16  # records read at a time when collecting every label


def record_dtype(n_cat: int, n_num: int) -> np.dtype:
    """One row on disk: int32 codes (a code table never nears 2**31 entries), float32 numerics and label."""
    return np.dtype([("cat", "<i4", (n_cat,)), ("num", "<f4", (n_num,)), ("label", "<f4"), ("row", "<i4")])


@dataclass(frozen=True)
class WindowChunk:
    """One chunk's records and sequence boundaries on disk, and the layout they were cut with."""

    rows: Path
    seq: Path
    layout: SequenceLayout


def write_chunk(frame: pd.DataFrame, spec: FeatureSpec, layout: SequenceLayout, stem: Path) -> WindowChunk:
    """Write the sequences of ``frame`` (a feature frame of whole users, sorted by user then time) under ``stem``."""
    data = layout.build(frame, spec)
    if len(frame) >= 2**31 or (len(data.cat) and (data.cat.min() < 0 or data.cat.max() >= 2**31)):
        raise ValueError(f"{stem}: a chunk of {len(frame)} rows or a code beyond int32 cannot be stored; "
                         "use smaller chunks (DKT_TRAIN_CHUNK_USERS)")
    order = data.order
    rec = np.empty(len(order), dtype=record_dtype(data.cat.shape[1], data.num.shape[1]))
    rec["cat"] = data.cat[order]
    rec["num"] = data.num[order]
    rec["label"] = data.label[order]
    rec["row"] = order
    chunk = WindowChunk(stem.with_suffix(".rows.npy"), stem.with_suffix(".seq.npy"), layout)
    np.save(chunk.rows, rec)
    np.save(chunk.seq, np.stack([data.seq_start, data.seq_end], axis=1).astype(np.int64))
    return chunk


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, byte offset of the data) of a C-ordered .npy file, reading only its header (the chunk files
    here and LightGBM's feature chunks are read with positioned reads from that offset)."""
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if fortran:
            raise ValueError(f"{path}: expected a C-ordered array")
        return shape, dtype, f.tell()


class WindowStore:
    """Chunks written by ``write_chunk``, read as one sequence set (``sequences.Sequences``).

    Holds one open file per chunk until ``close`` (or the end of a ``with`` block)."""

    def __init__(self, chunks: Sequence[WindowChunk], spec: FeatureSpec | None = None) -> None:
        if not chunks:
            raise ValueError("a window store needs at least one chunk")
        layouts = {c.layout for c in chunks}
        if len(layouts) > 1:
            raise ValueError(f"chunks cut with different sequence layouts {sorted(map(str, layouts))}")
        self.layout = chunks[0].layout
        self.chunks = list(chunks)
        self.dtype: np.dtype | None = None
        sizes, self._data_offsets, starts, ends = [], [], [], []
        offset = 0
        for c in self.chunks:
            shape, dtype, data_offset = npy_header(c.rows)
            if self.dtype is None:
                self.dtype = dtype
            if dtype != self.dtype or len(shape) != 1 or dtype.names != ("cat", "num", "label", "row"):
                raise ValueError(f"{c.rows}: not a window chunk like the others ({dtype} {shape})")
            seq = np.load(c.seq, allow_pickle=False)
            if seq.ndim != 2 or seq.shape[1] != 2 or (len(seq) and (seq.min() < 0 or seq.max() > shape[0])):
                raise ValueError(f"{c.seq}: sequence boundaries do not fit {shape[0]} records")
            starts.append(seq[:, 0] + offset)
            ends.append(seq[:, 1] + offset)
            sizes.append(shape[0])
            self._data_offsets.append(data_offset)
            offset += shape[0]
        self.n_cat, self.n_num = self.dtype["cat"].shape[0], self.dtype["num"].shape[0]
        if spec is not None and (self.n_cat, self.n_num) != (len(spec.categorical), len(spec.numeric)):
            raise ValueError(f"window chunks hold {self.n_cat} categorical and {self.n_num} numeric columns; the "
                             f"features have {len(spec.categorical)} and {len(spec.numeric)}: written by another "
                             "pipeline")
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # chunk k: [offsets[k], offsets[k+1])
        self.seq_start = np.concatenate(starts).astype(np.int64)
        self.seq_end = np.concatenate(ends).astype(np.int64)
        self._fds = [os.open(c.rows, os.O_RDONLY) for c in self.chunks]
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def pad_row(self) -> int:
        return self.n_rows

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> WindowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, k: int, start: int, stop: int) -> np.ndarray:
        """Records ``[start, stop)`` of chunk ``k``."""
        size = self.dtype.itemsize
        n = (stop - start) * size
        data = os.pread(self._fds[k], n, self._data_offsets[k] + start * size)
        if len(data) != n:
            raise OSError(f"{self.chunks[k].rows}: short read ({len(data)} of {n} bytes); was the file truncated?")
        return np.frombuffer(data, dtype=self.dtype)

    def gather(self, start: np.ndarray, end: np.ndarray, width: int) -> Batch:
        """The batch ``SequenceData.gather`` makes of the same windows (rows: frame rows of the chunks in order)."""
        b = len(start)
        cat = np.zeros((b, width, self.n_cat), dtype=np.int64)
        num = np.zeros((b, width, self.n_num), dtype=np.float32)
        label = np.full((b, width), -1.0, dtype=np.float32)
        rows = np.full((b, width), self.pad_row, dtype=np.int64)
        chunk = np.searchsorted(self.offsets, start, side="right") - 1
        for i in range(b):
            k, lo = int(chunk[i]), int(start[i] - self.offsets[chunk[i]])
            n = int(min(end[i] - start[i], width))
            rec = self._read(k, lo, lo + n)
            cat[i, :n] = rec["cat"]
            num[i, :n] = rec["num"]
            label[i, :n] = rec["label"]
            rows[i, :n] = rec["row"] + self.offsets[k]
        pos = start[:, None] + np.arange(width)[None, :]
        valid = pos < end[:, None]
        return Batch(cat, num, label, valid, rows, np.where(valid, pos, -1))

    def labels(self) -> np.ndarray:
        """Every row's label in frame order (float32), read a block of records at a time."""
        out = np.empty(self.n_rows, dtype=np.float32)
        for k in range(len(self.chunks)):
            n = int(self.offsets[k + 1] - self.offsets[k])
            for lo in range(0, n, LABEL_BLOCK_ROWS):
                rec = self._read(k, lo, min(n, lo + LABEL_BLOCK_ROWS))
                out[self.offsets[k] + rec["row"]] = rec["label"]
        return out


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())
