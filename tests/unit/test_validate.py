"""The data contract: every row is either valid, rejected with a reason, or a counted duplicate."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from dkt_core.data.io import DataFileError
from dkt_core.data.validate import validate_bytes, validate_file

HEADER = "userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag"
GOOD = [
    "7,A060001001,A060000001,1,2020-03-24 00:17:11,7224",
    "7,A060001002,A060000001,0,2020-03-24 00:17:14,7225",
    "8,A060001001,A060000001,-1,2020-03-24 00:18:00,7224",
]


def csv(*rows: str, header: str = HEADER, eol: str = "\n") -> bytes:
    return eol.join([header, *rows]).encode() + eol.encode()


def test_clean_file_all_valid():
    r = validate_bytes(csv(*GOOD), "clean.csv")
    assert (len(r.valid), len(r.rejected), r.duplicates, r.rows_read) == (3, 0, 0, 3)
    assert r.valid["answerCode"].tolist() == [1, 0, -1]
    assert str(r.valid["Timestamp"].dtype) == "datetime64[ns]"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("7,A1,T1,2,2020-03-24 00:17:11,7", "bad answerCode"),
        ("7,A1,T1,yes,2020-03-24 00:17:11,7", "bad answerCode"),
        ("7,A1,T1,1,24/03/2020,7", "unparsable Timestamp"),
        ("7,A1,T1,1,2020-13-24 00:17:11,7", "unparsable Timestamp"),
        ("7,A1,T1,1,2020-03-24 00:17:11,", "missing KnowledgeTag"),
        (",A1,T1,1,2020-03-24 00:17:11,7", "missing userID"),
        ("bad user!,A1,T1,1,2020-03-24 00:17:11,7", "bad userID"),
        ("7,,T1,1,2020-03-24 00:17:11,7", "missing assessmentItemID"),
        ("7,A1,T1,1,2020-03-24 00:17:11", "wrong field count"),
        ("7,A1,T1,1,2020-03-24 00:17:11,7,extra", "wrong field count"),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason(row, reason):
    r = validate_bytes(csv(GOOD[0], row, GOOD[1]), "bad.csv")
    assert len(r.valid) == 2
    assert r.rejected["reason"].tolist() == [reason]
    assert r.rejected["line"].tolist() == [3]  # header is line 1
    assert r.reasons == {reason: 1}
    assert len(r.valid) + len(r.rejected) + r.duplicates == r.rows_read


def test_duplicates_dropped_and_counted_nothing_lost():
    r = validate_bytes(csv(GOOD[0], GOOD[0], GOOD[1], GOOD[0], "x,A1,T1,9,2020-01-01 00:00:00,1"), "dup.csv")
    assert (len(r.valid), len(r.rejected), r.duplicates, r.rows_read) == (2, 1, 2, 5)


def test_sorted_per_user_by_time_stable():
    rows = ["9,B,T,1,2020-01-02 00:00:00,1", "8,A,T,1,2020-01-03 00:00:00,1", "9,C,T,0,2020-01-01 00:00:00,1",
            "9,D,T,1,2020-01-01 00:00:00,1"]
    r = validate_bytes(csv(*rows), "order.csv")
    assert r.valid["userID"].tolist() == ["9", "9", "9", "8"]
    assert r.valid["assessmentItemID"].tolist() == ["C", "D", "B", "A"]  # ties keep file order


def test_bom_crlf_column_order_and_extra_columns(tmp_path):
    header = "KnowledgeTag,Timestamp,extra,answerCode,testId,assessmentItemID,userID"
    rows = ["7224,2020-03-24 00:17:11,x,1,A060000001,A060001001,7"]
    data = b"\xef\xbb\xbf" + csv(*rows, header=header, eol="\r\n")
    path = tmp_path / "odd.csv.gz"
    path.write_bytes(gzip.compress(data))
    r = validate_file(path)
    assert len(r.valid) == 1 and r.valid.iloc[0]["assessmentItemID"] == "A060001001"
    assert any("extra" in w for w in r.warnings)


def test_parquet(tmp_path):
    r = validate_bytes(csv(*GOOD), "x.csv")
    path = tmp_path / "log.parquet"
    r.valid.to_parquet(path)
    again = validate_file(path)
    pd.testing.assert_frame_equal(again.valid, r.valid)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no data rows"),
        (csv(), "no data rows"),
        (b"a,b,c\n1,2,3\n", "required column"),
        (b"\x00\x01\x02binary", "binary"),
        (b"\xff\xfe\x00u\x00s", "binary"),
        (b"\x1f\x8bnot really gzip", "corrupt gzip"),
    ],
)
def test_unusable_files_raise_a_clear_error(data, message):
    with pytest.raises(DataFileError, match=message):
        validate_bytes(data, "broken.csv")


def test_missing_file_is_a_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="cannot be read"):
        validate_file(tmp_path / "nope.csv")


def test_quarantine_writes_valid_rejected_and_report(tmp_path):
    r = validate_bytes(csv(GOOD[0], "7,A1,T1,5,2020-03-24 00:17:11,7"), "q.csv")
    out = r.write_quarantine(tmp_path / "q")
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected["reason"].tolist() == ["bad answerCode"]
    assert len(pd.read_csv(out / "valid.csv")) == 1
