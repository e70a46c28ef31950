"""Streaming reads with caps: object size, decompressed size, gzip bombs, and what a stream may raise."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
import zlib
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.response import StreamingBody

from dkt_core.data.io import COLUMNS, DataFileError, ReadLimits, read_raw, read_raw_bytes, read_raw_stream
from dkt_core.data.validate import validate_stream

HEADER = ",".join(COLUMNS) + "\n"
ROW = "7,A060001001,A060000001,1,2020-03-24 00:17:11,7224\n"
NOW = datetime(2025, 6, 1)
MiB = 2**20


def log(n_rows: int) -> bytes:
    return (HEADER + "".join(f"{i},A{i % 97},T1,{i % 2},2020-03-24 00:17:{i % 60:02d},{i % 13}\n"
                             for i in range(n_rows))).encode()


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read and counts what it gave."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data, self._pos, self._step = data, 0, step
        self.given = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        self.reads += 1
        n = self._step if n is None or n < 0 else min(n, self._step)
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        self.given += len(out)
        return out


class Endless(io.RawIOBase):
    """An endless stream of valid rows (after a header): a source that never ends."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        out = (HEADER.encode() if self.given == 0 else b"") + ROW.encode() * max(1, n // len(ROW))
        self.given += len(out)
        return out


# --- ReadLimits and its settings ---------------------------------------------------------------------

def test_limits_defaults_and_from_env():
    assert ReadLimits() == ReadLimits(256 * MiB, 1024 * MiB, 100)
    assert ReadLimits.from_env({}) == ReadLimits()
    assert ReadLimits.from_env({"DKT_INGEST_MAX_OBJECT_BYTES": "", "DKT_INGEST_MAX_DECOMPRESSED_BYTES": " "}) == ReadLimits()
    got = ReadLimits.from_env({"DKT_INGEST_MAX_OBJECT_BYTES": "1000", "DKT_INGEST_MAX_DECOMPRESSED_BYTES": "2000",
                               "DKT_INGEST_MAX_COMPRESSION_RATIO": "7"})
    assert got == ReadLimits(1000, 2000, 7)


@pytest.mark.parametrize("value", ["abc", "1.5", "-1", "0", "1e9", "256MiB"])
@pytest.mark.parametrize("setting", ["DKT_INGEST_MAX_OBJECT_BYTES", "DKT_INGEST_MAX_DECOMPRESSED_BYTES",
                                     "DKT_INGEST_MAX_COMPRESSION_RATIO"])
def test_limits_from_env_refuses_bad_values_naming_the_setting(setting, value):
    with pytest.raises(ValueError, match=re.escape(setting) + ".*" + re.escape(repr(value))):
        ReadLimits.from_env({setting: value})


def test_limits_refuse_non_positive_values():
    with pytest.raises(ValueError, match="max_object_bytes"):
        ReadLimits(max_object_bytes=0)


# --- the object cap ----------------------------------------------------------------------------------

def test_object_cap_stops_reading_after_one_chunk_past_it():
    stream = Endless()
    with pytest.raises(DataFileError, match=r"^endless.csv: exceeds the 2 MiB object limit \(setting "
                                            r"DKT_INGEST_MAX_OBJECT_BYTES\)"):
        read_raw_stream(stream, "endless.csv", ReadLimits(max_object_bytes=2 * MiB))
    assert stream.given <= 3 * MiB + 2 * len(ROW)


def test_object_cap_is_inclusive_and_counts_compressed_bytes():
    data = log(2000)
    assert read_raw_stream(io.BytesIO(data), "x.csv", ReadLimits(max_object_bytes=len(data))).rows_read == 2000
    with pytest.raises(DataFileError, match=f"exceeds the {len(data) - 1} bytes object limit"):
        read_raw_stream(io.BytesIO(data), "x.csv", ReadLimits(max_object_bytes=len(data) - 1))
    gz = gzip.compress(data)
    assert read_raw_stream(io.BytesIO(gz), "x.csv.gz", ReadLimits(max_object_bytes=len(gz))).rows_read == 2000
    with pytest.raises(DataFileError, match="object limit"):
        read_raw_bytes(gz, "x.csv.gz", ReadLimits(max_object_bytes=len(gz) - 1))


def test_read_raw_applies_the_limits(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(log(1000))
    assert read_raw(path).rows_read == 1000
    with pytest.raises(DataFileError, match="object limit"):
        read_raw(path, ReadLimits(max_object_bytes=1000))


# --- the decompressed cap ----------------------------------------------------------------------------

def test_decompressed_cap_inclusive():
    data = log(3000)
    gz = gzip.compress(data)
    assert read_raw_bytes(gz, "x.gz", ReadLimits(max_decompressed_bytes=len(data))).rows_read == 3000
    with pytest.raises(DataFileError, match=r"^x.gz: decompresses to more than the \d+ bytes limit \(setting "
                                            r"DKT_INGEST_MAX_DECOMPRESSED_BYTES\)"):
        read_raw_bytes(gz, "x.gz", ReadLimits(max_decompressed_bytes=len(data) - 1))


def test_decompressed_cap_counts_every_gzip_member():
    member = gzip.compress(ROW.encode() * 10_000)
    data = gzip.compress(HEADER.encode()) + member * 10  # 10 members of 10,000 rows
    assert read_raw_bytes(data, "m.gz").rows_read == 100_000
    with pytest.raises(DataFileError, match="decompresses to more than"):
        read_raw_bytes(data, "m.gz", ReadLimits(max_decompressed_bytes=5 * len(ROW) * 10_000))


def test_bomb_stops_after_the_cap_plus_one_chunk():
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = bomb.compress(HEADER.encode()) + b"".join(bomb.compress(ROW.encode() * 20_000) for _ in range(200))
    body += bomb.flush()  # ~200 MB of rows in a few hundred KB
    stream = Trickle(body, step=64 * 1024)
    with pytest.raises(DataFileError, match="decompresses to more than the 8 MiB limit"):
        read_raw_stream(stream, "bomb.csv.gz", ReadLimits(max_decompressed_bytes=8 * MiB))
    # the compressed input consumed is about what 8 MiB (+ a chunk) of output needs, not the whole bomb
    assert stream.given < len(body) // 4


def test_compression_ratio_cap_applies_past_the_grace():
    data = log(100) * 6000  # ~21 MB of the same 3.5 KB repeated: compresses about 300 times
    gz = gzip.compress(data)
    assert len(data) > 16 * MiB and len(data) / len(gz) > 100
    with pytest.raises(DataFileError, match=r"^r.gz: expands more than 100 times its compressed size .*"
                                            r"\(setting DKT_INGEST_MAX_COMPRESSION_RATIO\)"):
        read_raw_bytes(gz, "r.gz")
    assert read_raw_bytes(gz, "r.gz", ReadLimits(max_compression_ratio=1000)).rows_read == len(data.splitlines()) - 1
    small = log(100) * 1000  # far above 100 times, but under the grace: small files may compress any amount
    assert len(small) / len(gzip.compress(small)) > 100
    assert read_raw_bytes(gzip.compress(small), "s.gz").rows_read == 1000 * 100 + 999


BOMB_READER = """
import json, sys
from dkt_core.data.io import DataFileError, ReadLimits
from dkt_core.data.validate import validate_stream
limits = ReadLimits(**json.loads(sys.argv[2]))
def peak_mb():  # VmHWM: this process's peak RSS (ru_maxrss would include the forking parent's)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
baseline = peak_mb()
try:
    with open(sys.argv[1], "rb") as f:
        validate_stream(f, "bomb.csv.gz", limits=limits)
    error = None
except DataFileError as exc:
    error = str(exc)
print(json.dumps({"error": error, "peak_mb": peak_mb(), "baseline_mb": baseline}))
"""


@pytest.mark.parametrize(
    ("payload", "limits", "expected"),
    [
        ("zeros", {}, "first line is longer than 1 MiB"),
        ("commas", {}, "first line is longer than 1 MiB"),
        ("rows", {}, "expands more than 100 times"),
        ("tiny-rows", {}, "expands more than 100 times"),
        # without the ratio cap the decompressed cap stops it, after that many bytes
        ("rows", {"max_compression_ratio": 10**6, "max_decompressed_bytes": 64 * MiB}, "decompresses to more than"),
    ],
)
def test_gzip_bomb_peak_memory_is_bounded(tmp_path, payload, limits, expected):
    """A ~1.6-5 MB gzip expanding to 1.6 GB: DataFileError, peak RSS of the reading process far below."""
    unit = {"zeros": b"0" * 2**24, "commas": b"0," * 2**23, "rows": ROW.encode() * (2**24 // len(ROW)),
            "tiny-rows": b"0,0,0,0,0,0\n" * (2**24 // 12)}[payload]
    head = HEADER.encode() if "rows" in payload else b""
    member = gzip.compress(unit, 9)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(head) + member * 100)  # 100 gzip members: 1.6 GB of output
    assert path.stat().st_size < 5e6
    out = subprocess.run([sys.executable, "-c", BOMB_READER, str(path), json.dumps(limits)], capture_output=True,
                         text=True, check=True, timeout=600)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(payload, limits, got)
    assert got["error"] is not None and got["error"].startswith("bomb.csv.gz: ") and expected in got["error"]
    assert got["peak_mb"] < 600  # a memory bound (1.6 GB expanded), not a timing


# --- any stream with .read(n) ------------------------------------------------------------------------

def test_a_trickling_stream_reads_the_same_as_bytes():
    data = log(5000)
    for body in (data, gzip.compress(data)):
        stream = Trickle(body, step=3)
        got = read_raw_stream(stream, "t.csv")
        assert got.frame.equals(read_raw_bytes(data, "t.csv").frame)
        assert stream.given == len(body)


def test_botocore_streaming_body():
    data = gzip.compress(log(100))
    r = validate_stream(StreamingBody(io.BytesIO(data), len(data)), "s3://b/k.csv.gz", now=NOW)
    assert len(r.valid) == 100


def test_parquet_from_a_stream():
    buf = io.BytesIO()
    pq.write_table(pa.table({c: [v] for c, v in zip(COLUMNS, ROW.strip().split(","), strict=True)}), buf)
    assert read_raw_stream(Trickle(buf.getvalue(), step=100), "p.parquet").rows_read == 1


class Flaky(io.RawIOBase):
    def __init__(self, data: bytes, fail_after: int, exc: BaseException) -> None:
        self._data, self._fail_after, self._exc, self._pos = data, fail_after, exc, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if self._pos >= self._fail_after:
            raise self._exc
        out = self._data[self._pos:self._pos + min(n, 4096)]
        self._pos += len(out)
        return out


@pytest.mark.parametrize("fail_after", [0, 10, 50_000])
@pytest.mark.parametrize("gz", [False, True])
def test_errors_of_the_stream_itself_propagate_unchanged(fail_after, gz):
    """A network error is not the object's fault: the caller must see it to retry, not quarantine."""
    data = log(5000)
    data = gzip.compress(data) if gz else data
    exc = TimeoutError("read timed out")
    with pytest.raises(TimeoutError, match="read timed out") as info:
        read_raw_stream(Flaky(data, min(fail_after, len(data) - 1), exc), "s3://b/k")
    assert info.value is exc


def test_parquet_dictionary_bomb_is_counted_before_it_is_expanded():
    big = "x" * 100_000
    n = 2_000
    table = pa.table({"userID": pa.array(["1"] * n), "assessmentItemID": pa.array([big] * n),
                      "testId": pa.array(["T"] * n), "answerCode": pa.array(["1"] * n),
                      "Timestamp": pa.array(["2020-01-01 00:00:00"] * n), "KnowledgeTag": pa.array(["7"] * n)})
    buf = io.BytesIO()
    pq.write_table(table, buf, use_dictionary=True, compression="zstd")
    assert len(buf.getvalue()) < 100_000  # 200 MB of text in a tiny file
    with pytest.raises(DataFileError, match=r"^d.parquet: decodes to more than the 64 MiB limit"):
        read_raw_bytes(buf.getvalue(), "d.parquet", ReadLimits(max_decompressed_bytes=64 * MiB))


def test_parquet_row_count_is_bounded_by_the_decompressed_cap():
    buf = io.BytesIO()
    n = 100_000
    pq.write_table(pa.table({c: pa.array(["1"] * n) for c in COLUMNS}), buf)
    with pytest.raises(DataFileError, match=rf"^r.parquet: has {n} rows; decodes to more than"):
        read_raw_bytes(buf.getvalue(), "r.parquet", ReadLimits(max_decompressed_bytes=n))


# --- `dkt validate` applies the same caps ------------------------------------------------------------

def test_dkt_validate_applies_the_ingest_caps(tmp_path, monkeypatch, capsys):
    from dkt_core.cli import main

    path = tmp_path / "log.csv"
    path.write_bytes(log(100))
    assert main(["validate", str(path)]) == 0
    monkeypatch.setenv("DKT_INGEST_MAX_OBJECT_BYTES", "1000")
    assert main(["validate", str(path)]) == 2
    assert "exceeds the 1000 bytes object limit (setting DKT_INGEST_MAX_OBJECT_BYTES)" in capsys.readouterr().err
    monkeypatch.setenv("DKT_INGEST_MAX_OBJECT_BYTES", "lots")
    assert main(["validate", str(path)]) == 2
    assert "DKT_INGEST_MAX_OBJECT_BYTES must be a whole number" in capsys.readouterr().err
