"""Out-of-core reading, validation and curation: a log larger than memory -> normalised chunks of whole users.

One pass over the file in batches (``io.iter_raw``), each batch judged by the same data contract as an
in-memory read (``validate.validate_raw``: the rejection reasons are identical). Valid rows are routed by
user: a user's rank is the order of their first valid row in the file, and chunk ``k`` holds the users of
rank ``k * chunk_users .. (k + 1) * chunk_users - 1``. A second pass over the chunks (each small) drops
exact duplicates (first kept) and sorts each user's rows by time, stable. Concatenated in order, the chunks
are exactly ``normalise`` of the whole log (users in order of first appearance, each by time, equal
timestamps in arrival order), so every per-user computation downstream can run one chunk at a time.

Memory: one batch (``batch_rows``) in the first pass, one chunk in the second, plus one dict entry per user.
Files: ``meta.json`` (written last: marks a complete directory), ``chunk_NNNNN.parquet`` and
``rejected.csv`` (every rejected row with its reason, as ``dkt validate --quarantine`` writes it).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dkt_core.data.columns import COLUMNS, TIME, USER
from dkt_core.data.io import iter_raw
from dkt_core.data.validate import validate_raw

META_FILE = "meta.json"
CHUNK_USERS = 4096  # users per chunk: ~1.2 M rows at the seed's ~300 rows per user
BATCH_ROWS = 1 << 20  # rows per read batch of the first pass


@dataclass
class ChunkedLog:
    """A validated, normalised log stored as chunks of whole users (in order)."""

    directory: Path
    chunks: list[str]
    chunk_rows: list[int]
    chunk_users: list[int]
    rows_read: int
    rejected: int
    duplicates: int
    reasons: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.chunk_rows)

    @property
    def users(self) -> int:
        return sum(self.chunk_users)

    def frames(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Each chunk as a frame of the seed columns (or ``columns``), in order."""
        for name in self.chunks:
            yield read_chunk(self.directory / name, columns)

    def save(self) -> None:
        meta = {k: v for k, v in asdict(self).items() if k != "directory"}
        (self.directory / META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> ChunkedLog:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        return cls(directory=directory, **meta)


def read_chunk(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    frame = pq.read_table(path, columns=columns).to_pandas()
    if TIME in frame:
        frame[TIME] = frame[TIME].astype("datetime64[ns]")
    return frame


def curate_chunks(path: str | Path, directory: str | Path, *, chunk_users: int = CHUNK_USERS,
                  batch_rows: int = BATCH_ROWS, now: datetime | None = None) -> ChunkedLog:
    """Read, validate and normalise ``path`` into chunks under ``directory`` (replaced if present).

    Raises ``DataFileError`` when the file is unusable, like ``validate_file``."""
    if chunk_users < 1 or batch_rows < 1:
        raise ValueError("chunk_users and batch_rows must be at least 1")
    now = now or datetime.now(UTC)
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    parts = directory / "parts"
    parts.mkdir(parents=True)
    t0 = time.perf_counter()
    rank: dict[str, int] = {}
    reasons: Counter[str] = Counter()
    rows_read = duplicates = rejected = 0
    warnings: list[str] = []
    rejected_path = directory / "rejected.csv"
    for b, raw in enumerate(iter_raw(path, batch_rows)):
        result = validate_raw(raw, now=now)
        rows_read += result.rows_read
        duplicates += result.duplicates
        rejected += len(result.rejected)
        reasons.update(result.reasons)
        for w in result.warnings:
            if w not in warnings:
                warnings.append(w)
        if len(result.rejected):
            result.rejected.to_csv(rejected_path, mode="a", header=not rejected_path.exists(), index=False)
        valid = result.valid
        if valid.empty:
            continue
        codes, uniques = pd.factorize(valid[USER])  # users in order of first appearance in the batch
        user_rank = np.fromiter((rank.setdefault(u, len(rank)) for u in uniques), dtype=np.int64, count=len(uniques))
        chunk = user_rank[codes] // chunk_users
        for c in np.unique(chunk):
            part = valid[chunk == c]
            d = parts / f"{int(c):05d}"
            d.mkdir(exist_ok=True)
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), d / f"{b:06d}.parquet")
    if not rank:
        shutil.rmtree(directory)
        from dkt_core.data.io import DataFileError

        raise DataFileError(f"{path}: has no valid rows ({rejected} rejected: {dict(reasons)})")
    t1 = time.perf_counter()
    names, chunk_rows, chunk_nusers = [], [], []
    for d in sorted(parts.iterdir()):
        frame, dups = normalise_chunk([read_chunk(p) for p in sorted(d.iterdir())])
        duplicates += dups
        name = f"chunk_{d.name}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / name)
        names.append(name)
        chunk_rows.append(len(frame))
        chunk_nusers.append(int(frame[USER].nunique()))
        shutil.rmtree(d)
    parts.rmdir()
    log = ChunkedLog(directory, names, chunk_rows, chunk_nusers, rows_read, rejected, duplicates,
                     dict(sorted(reasons.items())), warnings,
                     {"read_validate": round(t1 - t0, 3), "curate": round(time.perf_counter() - t1, 3)})
    assert log.rows + rejected + duplicates == rows_read, "curation lost rows"
    log.save()  # last: a directory with meta.json is complete
    return log


def normalise_chunk(parts: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """The pieces of one chunk (in file order, each already normalised by its batch's validation) ->
    (the chunk normalised as a whole, duplicates dropped across pieces). Users keep the order of their
    first appearance; rows of a user are sorted by time, stable, so equal times keep the arrival order."""
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    keep = ~frame.duplicated(COLUMNS, keep="first").to_numpy()
    deduped = frame[keep] if not keep.all() else frame
    user_order = pd.factorize(deduped[USER])[0]
    # users in order of first appearance = order of their first piece row (pieces are in file order)
    order = np.lexsort((deduped[TIME].to_numpy(), user_order))
    return deduped.iloc[order].reset_index(drop=True), int(len(frame) - len(deduped))
