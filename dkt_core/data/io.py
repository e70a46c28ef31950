"""Reading interaction logs (CSV, CSV.gz, Parquet) into a raw all-string table.

Nothing here judges the values: that is the data contract's job (``validate.py``). Reading only
decides whether the file is usable at all (``DataFileError``) and which physical lines had the wrong
number of fields (kept, with their text, so validation can reject them with a reason).
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (registers pa.compute)
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

COLUMNS = ["userID", "assessmentItemID", "testId", "answerCode", "Timestamp", "KnowledgeTag"]
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"


class DataFileError(Exception):
    """The file cannot be used at all (unreadable, not CSV/Parquet, a required column missing, empty)."""


@dataclass
class RawTable:
    """Rows as strings (seed columns only), with the source line of each and the malformed lines."""

    name: str
    frame: pd.DataFrame  # seed columns, dtype str, plus "line" (1-based line in the file; header = 1)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, text): wrong field count
    extra_columns: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.bad_lines)


def read_raw(path: str | Path) -> RawTable:
    """Read ``path`` (CSV, gzip'd CSV or Parquet, detected by content) into a ``RawTable``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return read_raw_bytes(data, str(path))


def read_raw_bytes(data: bytes, name: str) -> RawTable:
    """Like ``read_raw`` for bytes already in memory (e.g. an S3 object); ``name`` is used in messages."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFileError(f"{name}: is a corrupt gzip file ({exc})") from None
    if data[:4] == PARQUET_MAGIC:
        table = _read_parquet(data, name)
        bad: list[tuple[int, str]] = []
    else:
        table, bad = _read_csv(data, name)
    return _to_raw(table, bad, name)


def _read_parquet(data: bytes, name: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"{name}: is not a readable Parquet file ({exc})") from None


def _read_csv(data: bytes, name: str) -> tuple[pa.Table, list[tuple[int, str]]]:
    if not data.strip():
        raise DataFileError(f"{name}: is empty (no header and no data rows)")
    if b"\x00" in data[:4096]:
        raise DataFileError(f"{name}: is a binary file, not a CSV (expected the seed CSV format)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{name}: is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    bad: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((int(row.number or 0), row.text))
        return "skip"

    header = data.split(b"\n", 1)[0].decode("utf-8-sig").strip().split(",")
    names = [h.strip().strip('"') for h in header]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            # Single-threaded so InvalidRow.number is the real line number.
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataFileError(f"{name}: is not a valid CSV file ({str(exc).splitlines()[0]})") from None
    return table, bad


def _to_raw(table: pa.Table, bad: list[tuple[int, str]], name: str) -> RawTable:
    rename = {c: c.strip().lstrip("\ufeff").strip('"') for c in table.column_names}
    table = table.rename_columns([rename[c] for c in table.column_names])
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataFileError(
            f"{name}: required column(s) {', '.join(missing)} missing; the header must contain "
            f"{','.join(COLUMNS)} (any order)"
        )
    extra = [c for c in table.column_names if c not in COLUMNS]
    if table.num_rows == 0 and not bad:
        raise DataFileError(f"{name}: has a header but no data rows")
    frame = pa.table({c: _as_string(table.column(c)) for c in COLUMNS}).to_pandas()
    # Recover each row's file line: rows are in file order, interleaved with the skipped bad lines.
    frame["line"] = _good_row_lines(len(frame), sorted(n for n, _ in bad))
    return RawTable(name=name, frame=frame, bad_lines=sorted(bad), extra_columns=extra)


def _as_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(col.type):  # Parquet timestamps -> the seed's text form
        # via whole seconds: arrow's %S would print fractional seconds
        col = pa.compute.strftime(col.cast(pa.timestamp("s", tz=col.type.tz), safe=False), format="%Y-%m-%d %H:%M:%S")
    return pa.compute.fill_null(col.cast(pa.string()), "")


def _good_row_lines(n_rows: int, bad_numbers: list[int]) -> np.ndarray:
    lines = np.arange(2, n_rows + 2, dtype=np.int64)
    for b in bad_numbers:  # few bad lines in practice; each shifts the rows after it by one
        lines[lines >= b] += 1
    return lines
