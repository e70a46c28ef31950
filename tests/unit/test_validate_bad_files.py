"""No file can break reading: every bad file is a DataFileError naming it, or per-row rejections."""

from __future__ import annotations

import gzip
import io
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dkt_core.data.io import COLUMNS, DataFileError, read_raw_bytes
from dkt_core.data.validate import validate_bytes

HEADER = ",".join(COLUMNS)
ROW = "7,A060001001,A060000001,1,2020-03-24 00:17:11,7224"
NOW = datetime(2025, 6, 1)


def parquet(**columns: pa.Array) -> bytes:
    base = {"userID": pa.array(["1", "2"]), "assessmentItemID": pa.array(["A", "B"]), "testId": pa.array(["T", "T"]),
            "answerCode": pa.array(["1", "0"]), "Timestamp": pa.array(["2020-01-01 00:00:00"] * 2),
            "KnowledgeTag": pa.array(["7", "8"])}
    base.update(columns)
    buf = io.BytesIO()
    pq.write_table(pa.table(base), buf)
    return buf.getvalue()


def unusable(data: bytes, match: str) -> str:
    with pytest.raises(DataFileError, match=match) as info:
        validate_bytes(data, "up/bad.csv", now=NOW)
    assert str(info.value).startswith("up/bad.csv: ")  # names the object
    return str(info.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "is empty"),
        (b"\n\r\n  \n", "is empty"),
        (b"\x00" * 10_000, "binary"),
        (HEADER.encode(), "header but no data rows"),
        (HEADER.encode() + b"\r\n\r\n", "header but no data rows"),
        (gzip.compress(b""), "is empty"),
        (gzip.compress(HEADER.encode() + b"\n")[:-9], "corrupt gzip"),  # truncated: trailer cut off
        (gzip.compress((HEADER + "\n" + ROW + "\n").encode() * 50)[:40], "corrupt gzip"),
        (b"\x1f\x8b\x08\x00" + b"\xff" * 100, "corrupt gzip"),
        (gzip.compress(b"x") + b"trailing junk", "corrupt gzip"),
        (b"PAR1" + b"\x00" * 100, "Parquet"),
        (b"PAR1", "Parquet"),
        (b"a,b,c\n1,2,3\n", "required column"),
        (("userID," + HEADER + "\n1," + ROW + "\n").encode(), r"userID \(2 times\)"),
        (("userID,userID,userID," + HEADER.replace("userID,", "") + "\n").encode(), r"userID \(3 times\)"),
        (("x," * 2_000_000).encode(), "first line is longer than 1 MiB"),  # junk without a newline
        ((HEADER + "\n").encode() + "é".encode("latin-1") + b"," + ROW.encode()[2:] + b"\n", "not UTF-8"),
        ("userID,Timestamp".encode("utf-16"), "binary"),
    ],
    ids=["empty", "blank", "nul", "header-only", "header-blank", "empty-gzip", "gzip-no-trailer",
         "gzip-truncated", "gzip-garbage", "gzip-trailing-junk", "parquet-junk", "parquet-magic-only",
         "wrong-columns", "dup-userID", "triple-userID", "no-newline", "latin-1", "utf-16"],
)
def test_unusable_file_is_a_data_file_error(data, match):
    unusable(data, match)


def test_non_utf8_message_gives_the_byte_offset():
    data = (HEADER + "\n" + ROW + "\n").encode() + b"8,A,T,1,2020-03-24 00:17:11,caf\xe9\n"
    msg = unusable(data, "not UTF-8")
    assert f"byte {data.index(bytes([0xE9]))}" in msg


def test_non_utf8_deep_in_a_large_file_is_found_while_streaming():
    data = (HEADER + "\n" + (ROW + "\n") * 100_000).encode() + b"9,\xff,T,1,2020-03-24 00:17:11,1\n"
    unusable(gzip.compress(data), f"byte {data.rindex(bytes([0xFF]))}")


def test_blank_lines_before_the_header_are_skipped():
    r = validate_bytes(b"\n\n" + (HEADER + "\n" + ROW + "\n7,A,T,5,2020-03-24 00:17:11,1\n").encode(), "b.csv", now=NOW)
    assert len(r.valid) == 1 and r.rejected["line"].tolist() == [5]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_endings_lf_crlf_and_cr_alone(eol):
    rows = [ROW, "8,A,T,5,2020-03-24 00:17:11,1", "9,A,T,1,2020-03-24 00:17:12,1"]
    r = validate_bytes(eol.join([HEADER, *rows, ""]).encode(), "e.csv", now=NOW)
    assert (len(r.valid), r.rejected["line"].tolist()) == (2, [3])
    assert r.valid["KnowledgeTag"].tolist() == ["7224", "1"]  # no line ending left in a value


def test_header_that_is_not_a_csv_line():
    unusable(b'"userID\r,' + HEADER.encode() + b"\n" + ROW.encode(), "header")


def test_mutated_files_never_raise_anything_but_data_file_error():
    """Random byte mutations of a CSV, a gzip and a Parquet file: a result or DataFileError, nothing else."""
    import random

    rng = random.Random(11)
    rows = "".join(f"{i},A{i},T1,{i % 2},2020-03-24 00:17:{i % 60:02d},{i % 13}\n" for i in range(100))
    text = (HEADER + "\n" + rows).encode()
    bases = [text, gzip.compress(text), parquet(), gzip.compress(parquet())]
    outcomes = {"read": 0, "unusable": 0}
    for _ in range(300):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4 and at < len(data):
                data[at] = rng.randrange(256)
            elif op < 0.6:
                del data[at:at + rng.randint(1, 50)]
            elif op < 0.85:
                data[at:at] = rng.choice([b"\x00", b'"', b",", b"\n", b"\r", b"\xff", b"\xef\xbb\xbf"]) * rng.randint(1, 5)
            else:
                del data[at:]
        try:
            r = validate_bytes(bytes(data), "fuzz", now=NOW)
        except DataFileError as exc:
            assert str(exc).startswith("fuzz: ")
            outcomes["unusable"] += 1
        else:
            assert len(r.valid) + len(r.rejected) + r.duplicates == r.rows_read
            outcomes["read"] += 1
    assert min(outcomes.values()) >= 10  # both outcomes exercised


def test_extra_columns_with_repeated_names_are_ignored():
    r = validate_bytes(("x,x," + HEADER + ",x\n1,2," + ROW + ",3\n").encode(), "x.csv", now=NOW)
    assert len(r.valid) == 1 and r.warnings == ["x.csv: extra column(s) ignored: x, x, x"]


def test_quoted_values_and_a_quoted_newline_are_one_record():
    rows = [ROW, '8,"A,1","T\n2",1,2020-03-24 00:17:11,7224', '9,A,T,1,2020-03-24 00:17:11,"77"', "10,A,T,5,x,1"]
    r = validate_bytes((HEADER + "\n" + "\n".join(rows) + "\n").encode(), "q.csv", now=NOW)
    assert r.valid["assessmentItemID"].tolist() == ["A060001001", "A,1", "A"]
    assert r.valid["testId"].tolist()[1] == "T\n2"
    assert r.valid["KnowledgeTag"].tolist()[2] == "77"
    assert r.rejected["line"].tolist() == [5]  # record number: the quoted newline does not count
    assert len(r.valid) + len(r.rejected) + r.duplicates == r.rows_read == 4


def test_an_unclosed_quote_makes_the_rest_one_malformed_record():
    data = (HEADER + "\n" + ROW + "\n" + '8,"' + "x,\n" * (2 << 20) + (ROW + "\n") * 3).encode()  # 6 MiB record
    r = validate_bytes(data, "q.csv", now=NOW)
    assert (r.rows_read, len(r.valid), r.reasons) == (2, 1, {"wrong field count": 1})
    assert r.rejected["line"].tolist() == [3] and len(r.rejected["raw"].iloc[0]) == 1024


def test_thousands_of_columns():
    extra = [f"x{i}" for i in range(5000)]
    header = ",".join([*extra[:2500], *COLUMNS, *extra[2500:]])
    row = ",".join(["0"] * 2500 + ROW.split(",") + ["0"] * 2500)
    short = ",".join(["0"] * 10)
    r = validate_bytes(f"{header}\n{row}\n{short}\n{row}\n".encode(), "wide.csv", now=NOW)
    assert (len(r.valid), r.duplicates, r.reasons) == (1, 1, {"wrong field count": 1})
    assert r.rejected["line"].tolist() == [3] and r.rejected["raw"].tolist() == [short]
    assert len(r.warnings) == 1 and "x4999" in r.warnings[0]


def test_malformed_line_text_is_cut_to_a_kilobyte():
    long = "1," * 3000
    r = validate_bytes((HEADER + "\n" + ROW + "\n" + long + "\n").encode(), "l.csv", now=NOW)
    assert r.reasons == {"wrong field count": 1} and len(r.rejected["raw"].iloc[0]) == 1024


def test_too_many_malformed_lines_make_the_file_unusable(monkeypatch):
    monkeypatch.setattr("dkt_core.data.io.MAX_BAD_LINES", 5)
    r = validate_bytes((HEADER + "\n" + "x\n" * 5).encode(), "b.csv", now=NOW)
    assert r.reasons == {"wrong field count": 5}
    unusable((HEADER + "\n" + "x\n" * 6).encode(), "more than 5 records do not have the 6 fields")


def test_many_malformed_lines_keep_their_numbers():
    lines = [ROW if i % 3 else "bad" for i in range(3000)]
    r = validate_bytes((HEADER + "\n" + "\n".join(lines) + "\n").encode(), "m.csv", now=NOW)
    assert r.rejected["line"].tolist() == list(range(2, 3002, 3))
    assert len(r.valid) == 1 and r.duplicates == 1999  # all good rows are the same row


# --- Parquet: every column type becomes text or the file is refused naming the column ----------------

@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([1, 2], pa.int64()), ["1", "2"]),
        (pa.array([1, 0], pa.int8()), ["1", "0"]),
        (pa.array([1.0, 0.0]), ["1", "0"]),
        (pa.array([True, False]), ["true", "false"]),
        (pa.array([None, None], pa.null()), ["", ""]),
        (pa.array(["1", "0"]).dictionary_encode(), ["1", "0"]),
        (pa.array([1, 0]).dictionary_encode(), ["1", "0"]),
        (pa.array([b"1", b"0"], pa.binary()), ["1", "0"]),
        (pa.array(["1", None], pa.large_string()), ["1", ""]),
    ],
)
def test_parquet_answer_code_types_become_text(column, expected):
    raw = read_raw_bytes(parquet(answerCode=column), "t.parquet")
    assert raw.frame["answerCode"].tolist() == expected
    r = validate_bytes(parquet(answerCode=column), "t.parquet", now=NOW)
    assert len(r.valid) + len(r.rejected) + r.duplicates == r.rows_read == 2


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([datetime(2020, 3, 24, 0, 17, 11, 999999)] * 2, pa.timestamp("us")), "2020-03-24 00:17:11"),
        (pa.array([1585009031] * 2).cast(pa.timestamp("s", tz="Asia/Seoul")),  # 09:17:11 in Seoul
         "2020-03-24 00:17:11"),  # printed in UTC, not in the column's zone
        (pa.array([date(2020, 3, 24)] * 2, pa.date32()), "2020-03-24 00:00:00"),
        (pa.array([date(2020, 3, 24)] * 2, pa.date64()), "2020-03-24 00:00:00"),
        (pa.array([datetime(2300, 1, 1)] * 2, pa.timestamp("us")), "2300-01-01 00:00:00"),
        (pa.array([date(1, 1, 1)] * 2, pa.date32()), "0001-01-01 00:00:00"),
        (pa.array([10**15] * 2, pa.timestamp("s")), "31690708-07-05 01:46:40"),  # past arrow's %Y: via numpy
        (pa.array([-(10**14)] * 2, pa.timestamp("s")), "-3166904-02-24 14:13:20"),
    ],
    ids=["us", "zoned", "date32", "date64", "year2300", "year1", "far-future", "far-past"],
)
def test_parquet_timestamp_types_become_seed_text(column, expected):
    raw = read_raw_bytes(parquet(Timestamp=column), "t.parquet")
    assert raw.frame["Timestamp"].tolist() == [expected] * 2
    r = validate_bytes(parquet(Timestamp=column), "t.parquet", now=NOW)
    assert len(r.valid) + len(r.rejected) == 2
    if expected[:4] not in ("2020",):
        assert r.reasons == {"Timestamp out of range": 2}


@pytest.mark.parametrize(
    "column",
    [
        pa.array([["1"], ["2"]]),
        pa.array([{"a": "1"}, {"a": "2"}]),
        pa.array([[("k", "1")], [("k", "2")]], pa.map_(pa.string(), pa.string())),
        pa.array([["1"], ["2"]], pa.large_list(pa.string())),
    ],
    ids=["list", "struct", "map", "large_list"],
)
def test_parquet_nested_seed_column_is_refused_naming_it(column):
    with pytest.raises(DataFileError, match="t.parquet: column userID holds"):
        validate_bytes(parquet(userID=column), "t.parquet", now=NOW)


def test_parquet_nested_extra_column_is_ignored():
    r = validate_bytes(parquet(extra=pa.array([[1], [2]])), "t.parquet", now=NOW)
    assert len(r.valid) == 2 and r.warnings == ["t.parquet: extra column(s) ignored: extra"]


def test_parquet_binary_that_is_not_utf8_is_refused():
    with pytest.raises(DataFileError, match=r"column testId of type .*binary.* cannot be read as text \(Invalid UTF8"):
        validate_bytes(parquet(testId=pa.array([b"\xff", b"T"], pa.binary())), "t.parquet", now=NOW)


@pytest.mark.parametrize("dictionary", [False, True])
def test_parquet_text_that_is_not_utf8_is_refused(dictionary):
    """Parquet readers do not check string columns for UTF-8: invalid bytes must not become valid rows."""
    table = pa.table({c: pa.array(["1", "2"]) for c in COLUMNS}).set_column(1, "assessmentItemID",
                                                                             pa.array(["QQQQQQ1", "QQQQQQ2"]))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none", use_dictionary=dictionary, write_statistics=False)
    data = buf.getvalue().replace(b"QQQQQQ1", b"QQ\xffQQQ1")
    with pytest.raises(DataFileError, match="t.parquet: column assessmentItemID of type .* cannot be read as text"):
        validate_bytes(data, "t.parquet", now=NOW)


def test_parquet_duplicate_seed_column_is_refused():
    t = pa.Table.from_arrays([pa.array(["1"])] * 7, names=[*COLUMNS, "userID"])
    buf = io.BytesIO()
    pq.write_table(t, buf)
    with pytest.raises(DataFileError, match=r"userID \(2 times\)"):
        validate_bytes(buf.getvalue(), "d.parquet", now=NOW)


def test_parquet_without_rows_and_missing_column():
    empty = parquet(**{c: pa.array([], pa.string()) for c in COLUMNS})
    with pytest.raises(DataFileError, match="no data rows"):
        validate_bytes(empty, "e.parquet")
    buf = io.BytesIO()
    pq.write_table(pa.table({"userID": ["1"]}), buf)
    with pytest.raises(DataFileError, match="required column"):
        validate_bytes(buf.getvalue(), "m.parquet")


def test_parquet_truncated_is_refused():
    data = parquet()
    for cut in (len(data) // 2, len(data) - 4, 12):
        with pytest.raises(DataFileError, match="t.parquet: "):
            validate_bytes(data[:cut], "t.parquet")


def test_gzipped_parquet_and_multi_member_gzip():
    r = validate_bytes(gzip.compress(parquet()), "p.parquet.gz", now=NOW)
    assert len(r.valid) == 2
    data = gzip.compress((HEADER + "\n" + ROW + "\n").encode()) + gzip.compress(b"8,A,T,0,2020-03-24 00:17:12,1\n")
    r = validate_bytes(data, "two.csv.gz", now=NOW)
    assert r.valid["userID"].tolist() == ["7", "8"]
