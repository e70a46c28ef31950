"""Reading interaction logs (CSV, CSV.gz, Parquet) into a raw all-string table.

Nothing here judges the values: that is the data contract's job (``validate.py``). Reading only
decides whether the file is usable at all (``DataFileError``) and which records had the wrong number
of fields (kept, with their text, so validation can reject them with a reason).

Whatever the bytes, reading ends in a ``RawTable`` or a ``DataFileError`` naming the file and what is
wrong with it. Sources are read as a stream in chunks, with caps on the bytes read and on the bytes a
gzip expands to (``ReadLimits``), so memory stays bounded by the caps whatever is uploaded. Errors
raised by the stream itself (network, disk) are not the file's fault and propagate unchanged.
"""

from __future__ import annotations

import codecs
import csv
import io
import typing
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (registers pa.compute)
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dkt_core.data.columns import COLUMNS
from dkt_core.settings import ReadLimits as ReadLimits  # declared in the settings surface (re-exported)

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"

CHUNK_BYTES = 1 << 20  # one read from the source; one gzip output step
MAX_HEADER_BYTES = 1 << 20  # a CSV whose first line is longer is not the seed format (nor a bomb's header)
CSV_BLOCK_BYTES = 4 << 20  # pyarrow's CSV block: also the longest record it accepts
MAX_BAD_LINES = 1_000_000  # more records with the wrong field count: the file is not the seed format
MAX_BAD_LINE_CHARS = 1024  # the text of a malformed record kept for rejected.csv
PARQUET_BATCH_ROWS = 8192
MIN_ROW_BYTES = 16  # a seed row needs at least this many bytes (6 fields, a 10-char date): bounds Parquet rows

# What pyarrow, zlib and the codecs raise on bad bytes; all mean "this file is unusable".
_BAD_FILE_ERRORS = (
    pa.ArrowException, OSError, ValueError, zlib.error, EOFError, UnicodeError, MemoryError, OverflowError, csv.Error,
)

OBJECT_SETTING = "DKT_INGEST_MAX_OBJECT_BYTES"
DECOMPRESSED_SETTING = "DKT_INGEST_MAX_DECOMPRESSED_BYTES"
RATIO_SETTING = "DKT_INGEST_MAX_COMPRESSION_RATIO"
# The ratio cap applies once a gzip has produced this much: small files may compress any amount.
RATIO_GRACE_BYTES = 16 * 2**20


class DataFileError(Exception):
    """The file cannot be used at all (unreadable, not CSV/Parquet, a required column missing, empty)."""


@dataclass
class RawTable:
    """Rows as strings (seed columns only), with the source line of each and the malformed lines."""

    name: str
    frame: pd.DataFrame  # seed columns, dtype str, plus "line" (1-based record number; header = 1)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, text): wrong field count
    extra_columns: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.bad_lines)


def _unreadable(path: Path, exc: OSError) -> DataFileError:
    return DataFileError(f"{path}: cannot be read ({exc.strerror or exc})")


def _open_local(path: Path) -> typing.BinaryIO:
    """``path`` opened for reading; a local file that cannot be opened is a ``DataFileError`` naming it."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise _unreadable(path, exc) from None


def read_raw(path: str | Path, limits: ReadLimits | None = None) -> RawTable:
    """Read ``path`` (CSV, gzip'd CSV or Parquet, detected by content) into a ``RawTable``."""
    path = Path(path)
    with _open_local(path) as f:
        try:
            return read_raw_stream(f, str(path), limits or ReadLimits())
        except OSError as exc:  # a local read failing is this file's problem, unlike a network stream's
            raise _unreadable(path, exc) from None


def read_raw_bytes(data: bytes, name: str, limits: ReadLimits | None = None) -> RawTable:
    """Like ``read_raw`` for bytes already in memory; ``name`` is used in messages."""
    limits = limits or ReadLimits()
    if len(data) > limits.max_object_bytes:
        raise DataFileError(_object_limit_message(name, limits))
    return read_raw_stream(io.BytesIO(data), name, limits)


def read_raw_stream(stream: typing.BinaryIO, name: str, limits: ReadLimits = ReadLimits()) -> RawTable:  # noqa: B008
    """Read a CSV / CSV.gz / Parquet source from ``stream`` (anything with ``.read(n)``, e.g. a boto3
    ``StreamingBody``) in chunks, never holding more than about the caps in ``limits``.

    Raises ``DataFileError`` for any fault of the bytes; exceptions from ``stream.read`` itself
    (network, disk) propagate unchanged so a caller can retry.
    """
    src = _Source(stream, name, limits)
    try:
        head = src.peek(len(PARQUET_MAGIC))
        if head.startswith(PARQUET_MAGIC):
            parsed = _read_parquet(src.read_all(), name, limits)
        else:
            parsed = _read_csv(src, name)
        return _to_raw(parsed, name)
    except Exception as exc:
        raise _read_failure(exc, src, name) from None


def _read_failure(exc: Exception, src: _Source, name: str) -> BaseException:
    """What a failed read of ``src`` raises: the stream's own failure first (raised inside a read, maybe
    re-wrapped by pyarrow: the real cause), a ``DataFileError`` naming the file for a malformed one, else ``exc``."""
    if src.failure is not None:
        return src.failure
    if isinstance(exc, _BAD_FILE_ERRORS):  # DataFileError is none of these: it passes as it is
        return DataFileError(f"{name}: cannot be read as CSV or Parquet ({_short(exc)})")
    return exc


def _short(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    return text[:300]


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"


def _object_limit_message(name: str, limits: ReadLimits) -> str:
    return f"{name}: exceeds the {_size(limits.max_object_bytes)} object limit (setting {OBJECT_SETTING})"


def _decompressed_limit_message(name: str, limits: ReadLimits, what: str = "decompresses") -> str:
    return (f"{name}: {what} to more than the {_size(limits.max_decompressed_bytes)} limit "
            f"(setting {DECOMPRESSED_SETTING})")


class _Source(io.RawIOBase):
    """The bytes of one source, pulled in chunks: counts what is read from the stream (object cap),
    gunzips incrementally (``max_length`` bounds each step, so a bomb is stopped after at most the cap
    plus one chunk of output) and counts the output (decompressed cap). Concatenated gzip members are
    read like ``gzip.decompress`` does."""

    def __init__(self, stream: typing.BinaryIO, name: str, limits: ReadLimits) -> None:
        super().__init__()
        self._stream, self.name, self.limits = stream, name, limits
        self.failure: BaseException | None = None  # first exception raised while reading
        self._raw_total = 0
        self._out_total = 0
        self._started = False
        self._gz: typing.Any = None  # zlib decompress object while inside a gzip member
        self._gz_input = b""  # compressed bytes not yet given to the decompressor
        self._is_gzip = False
        self._buf = bytearray()  # output produced and not yet consumed (peek)
        self._eof = False

    def readable(self) -> bool:
        return True

    def _read_stream(self) -> bytes:
        data = self._stream.read(CHUNK_BYTES)
        if data is None:  # a non-blocking raw stream with nothing ready: not expected from files or S3
            raise DataFileError(f"{self.name}: the source returned no data (non-blocking stream)")
        self._raw_total += len(data)
        if self._raw_total > self.limits.max_object_bytes:
            raise DataFileError(_object_limit_message(self.name, self.limits))
        return bytes(data)

    def _start(self) -> None:
        self._started = True
        first = self._read_stream()
        while 0 < len(first) < len(GZIP_MAGIC):  # a short first read cannot decide the format
            more = self._read_stream()
            if not more:
                break
            first += more
        if first.startswith(GZIP_MAGIC):
            self._is_gzip = True
            self._gz_input = first
        else:
            self._emit(first)
            self._eof = not first

    def _emit(self, data: bytes) -> None:
        self._out_total += len(data)
        if self._is_gzip:
            if self._out_total > self.limits.max_decompressed_bytes:
                raise DataFileError(_decompressed_limit_message(self.name, self.limits))
            consumed = self._raw_total - len(self._gz_input)
            ratio = self.limits.max_compression_ratio
            if self._out_total > max(RATIO_GRACE_BYTES, ratio * consumed):
                raise DataFileError(f"{self.name}: expands more than {ratio} times its compressed size (a gzip "
                                    f"bomb?); real logs compress 6-10 times (setting {RATIO_SETTING})")
        self._buf += data

    def _fill(self) -> None:
        """Append at least one byte to the buffer, or set EOF."""
        if not self._started:
            self._start()
            if self._buf or self._eof:
                return
        while not self._eof:
            if not self._is_gzip:
                data = self._read_stream()
                if not data:
                    self._eof = True
                    return
                self._emit(data)
                return
            if not self._gz_input:
                self._gz_input = self._read_stream()
                if not self._gz_input:
                    if self._gz is not None:  # inside a member when the input ended
                        raise DataFileError(f"{self.name}: is a corrupt gzip file (truncated)")
                    self._eof = True
                    return
            if self._gz is None:  # a new member (the first, or one concatenated after the previous)
                self._gz = zlib.decompressobj(wbits=31)
            try:
                out = self._gz.decompress(self._gz_input, CHUNK_BYTES)
            except zlib.error as exc:
                raise DataFileError(f"{self.name}: is a corrupt gzip file ({exc})") from None
            if self._gz.eof:
                self._gz_input, self._gz = self._gz.unused_data, None
            else:
                self._gz_input = self._gz.unconsumed_tail
            if out:
                self._emit(out)
                return

    def _guarded(self, fn: typing.Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            self.failure = self.failure or exc
            raise

    def peek(self, n: int) -> bytes:
        """At least ``n`` bytes (fewer only at EOF) without consuming them."""
        while len(self._buf) < n and not self._eof:
            self._guarded(self._fill)
        return bytes(self._buf[:n])

    @property
    def buffered(self) -> bytes:
        return bytes(self._buf)

    @property
    def exhausted(self) -> bool:
        """Nothing more will come from the stream (the buffer may still hold bytes)."""
        return self._eof

    def consume(self, n: int) -> None:
        del self._buf[:n]

    def readinto(self, b: typing.Any) -> int:
        if not self._buf and not self._eof:
            self._guarded(self._fill)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        del self._buf[:n]
        return n

    def read_all(self) -> bytes:
        """Everything left (for Parquet, which needs random access): bounded by the caps."""
        while not self._eof:
            self._guarded(self._fill)
        data, self._buf = bytes(self._buf), bytearray()
        return data


class _Utf8Checked(io.RawIOBase):
    """Passes the bytes of a ``_Source`` through, failing with the byte offset at the first byte that
    is not UTF-8 (pyarrow only checks the columns it converts)."""

    def __init__(self, src: _Source, name: str, offset: int) -> None:
        super().__init__()
        self._src, self._name, self._offset = src, name, offset
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def readable(self) -> bool:
        return True

    def readinto(self, b: typing.Any) -> int:
        n = self._src.readinto(b)
        try:
            self._decoder.decode(bytes(b[:n]), final=n == 0)
        except UnicodeDecodeError as exc:
            err = DataFileError(f"{self._name}: is not UTF-8 text (byte {self._offset + exc.start}); save it as UTF-8 CSV")
            self._src.failure = self._src.failure or err
            raise err from None
        self._offset += n
        return n


def _header(src: _Source, name: str) -> tuple[list[str], int, int, int]:
    """Parse the first non-blank line (blank lines before it are consumed): (column names, its line
    number, its length in bytes with the line ending, the file offset after it). Lines end at LF, CR or
    CRLF, as for pyarrow."""
    skipped = 0
    line_no = 1
    while True:
        head = src.peek(MAX_HEADER_BYTES + 2)
        if b"\x00" in head[:4096]:
            raise DataFileError(f"{name}: is a binary file, not a CSV (expected the seed CSV format)")
        if not head.strip():
            raise DataFileError(f"{name}: is empty (no header and no data rows)")
        ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
        end = min(ends) if ends else len(head)
        if end > MAX_HEADER_BYTES:
            raise DataFileError(f"{name}: its first line is longer than {_size(MAX_HEADER_BYTES)}: not a CSV "
                                f"header (the seed format starts with {','.join(COLUMNS)})")
        size = end + (2 if head[end:end + 2] == b"\r\n" else 1 if end < len(head) else 0)
        line = head[:end]
        if line.strip():
            break
        src.consume(size)  # a blank line before the header
        skipped += size
        line_no += 1
    if b"\x00" in line:
        raise DataFileError(f"{name}: is a binary file, not a CSV (expected the seed CSV format)")
    try:
        text = line.decode("utf-8-sig" if skipped == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{name}: is not UTF-8 text (byte {skipped + exc.start}); save it as UTF-8 CSV") from None
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise DataFileError(f"{name}: its header is not a CSV line ({exc})") from None
    return [_clean_name(n) for n in fields], line_no, size, skipped + size


def _clean_name(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().strip('"')


def _check_columns(names: list[str], name: str) -> None:
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataFileError(
            f"{name}: required column(s) {', '.join(missing)} missing; the header must contain "
            f"{','.join(COLUMNS)} (any order)"
        )
    counts = Counter(names)
    twice = [f"{c} ({counts[c]} times)" for c in COLUMNS if counts[c] > 1]
    if twice:
        raise DataFileError(f"{name}: column(s) {', '.join(twice)} appear more than once; keep one of each")


def _read_csv(src: _Source, name: str) -> _Parsed:
    csv_stream = _CsvStream(src, name)
    batches = list(csv_stream)
    return _Parsed(csv_stream.table(batches), csv_stream.bad, csv_stream.extra, first_line=csv_stream.header_line + 1)


class _CsvStream:
    """The record batches of a CSV source in file order (pyarrow reads one block at a time), the malformed
    records seen so far in ``bad`` (in file order), and the header's facts. Iterating raises
    ``DataFileError`` for any fault of the bytes."""

    def __init__(self, src: _Source, name: str) -> None:
        names, header_line, header_bytes, offset = _header(src, name)
        _check_columns(names, name)  # before reading on: a bomb of junk fails here, after one chunk
        src.consume(header_bytes)
        while not src.buffered.strip() and not src.exhausted:  # anything but blank lines after the header?
            src.peek(len(src.buffered) + 1)
        if not src.buffered.strip():
            raise DataFileError(f"{name}: has a header but no data rows")
        self.src, self.name, self.header_line = src, name, header_line
        self.extra = [n for n in names if n not in COLUMNS]
        self.bad: list[tuple[int, str]] = []
        self.n_bad = 0
        too_many = DataFileError(f"{name}: more than {MAX_BAD_LINES} records do not have the {len(names)} fields "
                                 "of the header; it is not the seed CSV format")

        def on_invalid(row: pacsv.InvalidRow) -> str:
            if self.n_bad >= MAX_BAD_LINES:  # pyarrow ignores an exception raised here: "error" stops the read
                src.failure = src.failure or too_many
                return "error"
            self.n_bad += 1
            self.bad.append((int(row.number or 0) + header_line, row.text[:MAX_BAD_LINE_CHARS]))
            return "skip"

        # Columns by position: duplicate or odd names in the header cannot confuse pyarrow, and only the
        # seed columns are converted (a file with thousands of columns costs little).
        positional = [f"c{i}" for i in range(len(names))]
        self.seed = {c: f"c{names.index(c)}" for c in COLUMNS}
        stream = io.BufferedReader(_Utf8Checked(src, name, offset), CHUNK_BYTES)
        self._reader = self._translate(lambda: pacsv.open_csv(
            stream,
            # Serial, so InvalidRow.number counts records in file order.
            read_options=pacsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES, column_names=positional),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in self.seed.values()},
                include_columns=list(self.seed.values()),
                strings_can_be_null=False,
            ),
        ))

    def _translate(self, fn: typing.Callable[[], typing.Any]) -> typing.Any:
        try:
            return fn()
        except pa.ArrowInvalid as exc:
            if self.src.failure is not None:
                raise self.src.failure from None
            msg = str(exc)
            if "straddl" in msg:
                raise DataFileError(f"{self.name}: has a record longer than {_size(CSV_BLOCK_BYTES)} (an unclosed "
                                    "quote?); not the seed CSV format") from None
            raise DataFileError(f"{self.name}: is not a valid CSV file ({_short(exc)})") from None

    def __iter__(self) -> typing.Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = self._translate(self._reader.read_next_batch)
            except StopIteration:
                return
            yield batch

    def table(self, batches: list[pa.RecordBatch]) -> pa.Table:
        """The seed columns of ``batches`` under their seed names."""
        schema = pa.schema([(c, pa.string()) for c in self.seed.values()])
        return pa.Table.from_batches(batches, schema=schema).rename_columns(list(self.seed))


@dataclass
class _Parsed:
    table: pa.Table  # the seed columns, in COLUMNS order, any type
    bad: list[tuple[int, str]]
    extra: list[str]
    first_line: int  # record number of the first data row


def _read_parquet(data: bytes, name: str, limits: ReadLimits) -> _Parsed:
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
    except _BAD_FILE_ERRORS as exc:
        raise DataFileError(f"{name}: is not a readable Parquet file ({_short(exc)})") from None
    fields, names = _parquet_columns(pf, name)
    rows = pf.metadata.num_rows
    if rows > limits.max_decompressed_bytes // MIN_ROW_BYTES:
        raise DataFileError(_decompressed_limit_message(name, limits, f"has {rows} rows; decodes"))
    # Only the seed columns are read (by their names in the file, unique: checked above). Text read as
    # dictionaries stays encoded, so a small dictionary repeated many times is counted before it is
    # expanded; every batch is counted against the decompressed cap as it arrives.
    seed = [fields[names.index(c)].name for c in COLUMNS]
    pf = pq.ParquetFile(io.BytesIO(data), read_dictionary=[f for f, c in zip(seed, COLUMNS, strict=True)
                                                              if _is_text(fields[names.index(c)].type)])
    chunks: list[pa.RecordBatch] = []
    used = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=seed, use_threads=False):
        cols = [batch.column(f) for f in seed]
        used += sum(_decoded_bytes(col) for col in cols)
        if used > limits.max_decompressed_bytes:
            raise DataFileError(_decompressed_limit_message(name, limits, "decodes"))
        chunks.append(pa.RecordBatch.from_arrays(cols, names=COLUMNS))
    if chunks:
        table = pa.Table.from_batches(chunks)
    else:  # no rows: _to_raw says so
        table = pa.table({c: pa.array([], pa.string()) for c in COLUMNS})
    extra = [n for n in names if n not in COLUMNS]
    return _Parsed(table, [], extra, first_line=2)


def _parquet_columns(pf: pq.ParquetFile, name: str) -> tuple[list[pa.Field], list[str]]:
    """The file's fields and their cleaned names, after checking the seed columns are there and scalar."""
    fields = list(pf.schema_arrow)
    names = [_clean_name(f.name) for f in fields]
    _check_columns(names, name)
    for c in COLUMNS:
        t = fields[names.index(c)].type
        if pa.types.is_nested(t) or pa.types.is_union(t) or isinstance(t, pa.ExtensionType):
            raise DataFileError(f"{name}: column {c} holds {t} values; each field must be one text, number or "
                                "timestamp value")
    return fields, names


def iter_raw(path: str | Path, batch_rows: int = 1 << 20) -> typing.Iterator[RawTable]:
    """Read a local log (CSV, CSV.gz or Parquet) as consecutive ``RawTable`` batches of about ``batch_rows``
    rows, each with the file's own line numbers: the out-of-core road, for logs larger than memory.

    Memory is one batch whatever the file's size, so the size caps of ``ReadLimits`` (which bound a read
    held whole in memory) do not apply; a gzip is still read as a stream. The last batch may hold only
    malformed records. Raises ``DataFileError`` like ``read_raw``.
    """
    path = Path(path)
    name = str(path)
    with _open_local(path) as f:
        if f.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC:
            yield from _iter_parquet(path, name, batch_rows)
            return
        f.seek(0)
        unbounded = ReadLimits(max_object_bytes=1 << 62, max_decompressed_bytes=1 << 62,
                               max_compression_ratio=1 << 30)
        src = _Source(f, name, unbounded)
        try:
            yield from _iter_csv(src, name, batch_rows)
        except Exception as exc:
            raise _read_failure(exc, src, name) from None


def _iter_parquet(path: Path, name: str, batch_rows: int) -> typing.Iterator[RawTable]:
    try:
        pf = pq.ParquetFile(path)
    except _BAD_FILE_ERRORS as exc:
        raise DataFileError(f"{name}: is not a readable Parquet file ({_short(exc)})") from None
    fields, names = _parquet_columns(pf, name)
    if pf.metadata.num_rows == 0:
        raise DataFileError(f"{name}: has a header but no data rows")
    seed = [fields[names.index(c)].name for c in COLUMNS]
    extra = [n for n in names if n not in COLUMNS]
    first = 2
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=seed, use_threads=False):
            table = pa.Table.from_batches([pa.RecordBatch.from_arrays([batch.column(f) for f in seed], names=COLUMNS)])
            yield _to_raw(_Parsed(table, [], extra, first_line=first), name)
            first += table.num_rows
    except _BAD_FILE_ERRORS as exc:
        raise DataFileError(f"{name}: is not a readable Parquet file ({_short(exc)})") from None


def _iter_csv(src: _Source, name: str, batch_rows: int) -> typing.Iterator[RawTable]:
    head = src.peek(len(PARQUET_MAGIC))
    if head.startswith(PARQUET_MAGIC):  # a gzip'd Parquet file: not a log format
        raise DataFileError(f"{name}: is a compressed Parquet file; write Parquet uncompressed by gzip")
    csv_stream = _CsvStream(src, name)
    next_line = csv_stream.header_line + 1  # record number of the next good row
    pending: list[pa.RecordBatch] = []
    rows = 0

    def emit(final: bool = False) -> RawTable:
        nonlocal next_line, pending, rows
        table = csv_stream.table(pending)
        lines = _good_row_lines(table.num_rows, np.array([n for n, _ in csv_stream.bad], dtype=np.int64), next_line)
        last = int(lines[-1]) if len(lines) else next_line - 1
        # the malformed records among these rows (all that are left, at the end)
        mine = list(csv_stream.bad) if final else [b for b in csv_stream.bad if b[0] <= last]
        csv_stream.bad = csv_stream.bad[len(mine):]
        next_line, pending, rows = last + 1, [], 0
        return _to_raw(_Parsed(table, mine, csv_stream.extra, first_line=0), name, lines=lines)

    for batch in csv_stream:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= batch_rows:
            yield emit()
    if pending or csv_stream.bad:
        yield emit(final=True)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _decoded_bytes(col: pa.Array) -> int:
    """Bytes the column takes once every value is text (dictionaries expanded)."""
    if isinstance(col, pa.DictionaryArray) and _is_text(col.dictionary.type):
        lengths = pa.compute.binary_length(col.dictionary)
        taken = pa.compute.take(lengths, col.indices)
        return int(pa.compute.sum(taken).as_py() or 0) + 8 * len(col)
    return col.nbytes + 8 * len(col)


def _to_raw(parsed: _Parsed, name: str, lines: np.ndarray | None = None) -> RawTable:
    """``lines``: the good rows' record numbers when the caller knows them (a batch of a stream)."""
    table = parsed.table
    if table.num_rows == 0 and not parsed.bad:
        raise DataFileError(f"{name}: has a header but no data rows")
    columns = {}
    for c in COLUMNS:
        try:
            columns[c] = _as_string(table.column(c))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise DataFileError(f"{name}: column {c} of type {table.column(c).type} cannot be read as text "
                                f"({_short(exc)})") from None
    frame = pa.table(columns).to_pandas()
    bad = sorted(parsed.bad)
    if lines is None:
        lines = _good_row_lines(len(frame), np.array([n for n, _ in bad], dtype=np.int64), parsed.first_line)
    frame["line"] = lines
    return RawTable(name=name, frame=frame, bad_lines=bad, extra_columns=parsed.extra)


_FIRST_SECOND, _LAST_SECOND = -62135596800, 253402300799  # 0001-01-01 00:00:00, 9999-12-31 23:59:59 UTC


def _as_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Any scalar column as text in the seed's form (timestamps as naive UTC ``YYYY-MM-DD HH:MM:SS``)."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_date(t):
        col = col.cast(pa.timestamp("s"))
        t = col.type
    if pa.types.is_timestamp(t):
        col = _timestamp_text(col)
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        col = col.cast(pa.string())
    col = pa.compute.fill_null(col.cast(pa.string()), "")
    col.validate(full=True)  # Parquet text is not checked for UTF-8 when read: invalid bytes end here
    return col


def _timestamp_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    # Whole seconds in UTC: arrow's %S would print fractions, and a zone-aware column its local time.
    secs = col.cast(pa.timestamp(col.type.unit), safe=False).cast(pa.timestamp("s"), safe=False).cast(pa.int64())
    lo, hi = pa.compute.min_max(secs).values()
    if lo.as_py() is None or (lo.as_py() >= _FIRST_SECOND and hi.as_py() <= _LAST_SECOND):  # the usual case
        # arrow's cast prints years 1..9999 as "YYYY-MM-DD HH:MM:SS" (30 times faster than strftime)
        return secs.cast(pa.timestamp("s")).cast(pa.string())
    null = np.asarray(secs.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ints = np.asarray(secs.fill_null(0).to_numpy(), dtype=np.int64)
    out = np.full(len(ints), "", dtype=object)
    inside = (ints >= _FIRST_SECOND) & (ints <= _LAST_SECOND) & ~null
    if inside.any():
        ts = pa.array(ints[inside]).cast(pa.timestamp("s"))
        out[inside] = ts.cast(pa.string()).to_numpy(zero_copy_only=False)
    outside = ~inside & ~null
    if outside.any():  # numpy prints any year (e.g. 17525-05-06T10:13:20); judged out of range later
        text = np.datetime_as_string(ints[outside].astype("datetime64[s]"), unit="s")
        out[outside] = [t.replace("T", " ") for t in text]
    return pa.chunked_array([pa.array(out, pa.string(), mask=null)])


def _good_row_lines(n_rows: int, bad_numbers: np.ndarray, first: int = 2) -> np.ndarray:
    """Record numbers of the good rows: consecutive from ``first``, skipping the malformed records."""
    g = np.arange(n_rows, dtype=np.int64)
    # the k-th bad record (0-based, sorted) comes after (bad - first - k) good rows
    gaps = np.asarray(bad_numbers, dtype=np.int64) - first - np.arange(len(bad_numbers), dtype=np.int64)
    return g + first + np.searchsorted(gaps, g, side="right")
