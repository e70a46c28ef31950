"""The Timestamp range of the data contract: a row dated outside it is rejected, never the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dkt_core.cli import main
from dkt_core.data.schema import TIMESTAMP_MIN, TIMESTAMP_OUT_OF_RANGE, parse_timestamps, timestamp_max
from dkt_core.data.validate import validate_bytes, validate_file

HEADER = "userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag"
NOW = datetime(2025, 6, 1, 12, 0, 0)
GOOD = ["7,A1,T1,1,2020-03-24 00:17:11,7224", "8,A2,T1,0,2025-06-02 11:59:59,7225"]


def csv(*rows: str) -> bytes:
    return "\n".join([HEADER, *rows]).encode() + b"\n"


@pytest.mark.parametrize(
    "stamp",
    [
        "2300-01-01 00:00:00",  # past pandas' datetime64[ns] (2262-04-11): raised OutOfBoundsDatetime
        "2262-04-12 00:00:00",
        "9999-12-31 23:59:59",
        "0000-01-01 00:00:00",  # year 0: no datetime object can hold it
        "0001-01-01 00:00:00",
        "1677-09-21 00:00:00",
        "1969-12-31 23:59:59",
        "2025-06-02 12:00:01",  # now + 1 day + 1 s
        "2025-06-03 12:00:00",  # tomorrow + 1 day
    ],
)
def test_out_of_range_row_is_rejected_with_its_reason(stamp):
    r = validate_bytes(csv(GOOD[0], f"9,A3,T1,1,{stamp},7", GOOD[1]), "range.csv", now=NOW)
    assert r.rejected["reason"].tolist() == [TIMESTAMP_OUT_OF_RANGE]
    assert r.rejected["Timestamp"].tolist() == [stamp]
    assert r.rejected["line"].tolist() == [3]
    assert len(r.valid) == 2
    assert len(r.valid) + len(r.rejected) + r.duplicates == r.rows_read


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("1970-01-01 00:00:00", None),  # the bounds are inclusive
        ("2025-06-02 12:00:00", None),
        ("2000-02-29 00:00:00", None),
        ("2400-02-29 00:00:00", TIMESTAMP_OUT_OF_RANGE),  # a real day (leap year), out of range
        ("2300-02-29 00:00:00", "unparsable Timestamp"),  # no such day
        ("0000-02-30 00:00:00", "unparsable Timestamp"),
        ("2300-13-01 00:00:00", "unparsable Timestamp"),
        ("2300-01-01", "unparsable Timestamp"),
        ("+2020-01-01 00:00:00", "unparsable Timestamp"),
        (" 2020-01-01 00:00:00", "unparsable Timestamp"),
        ("12020-01-01 00:00:00", TIMESTAMP_OUT_OF_RANGE),  # the seed layout, a five-digit year
        ("-0044-03-15 12:00:00", TIMESTAMP_OUT_OF_RANGE),
        ("٢٠٢٠-01-01 00:00:00", None),  # pandas reads any Unicode decimal digits: the same instant
    ],
)
def test_range_bounds_and_unparsable_values(stamp, reason):
    r = validate_bytes(csv(GOOD[0], f"9,A3,T1,1,{stamp},7"), "edge.csv", now=NOW)
    assert r.rejected["reason"].tolist() == ([] if reason is None else [reason])
    assert len(r.valid) + len(r.rejected) + r.duplicates == r.rows_read


def test_valid_timestamps_are_parsed_exactly():
    r = validate_bytes(csv(*GOOD), "ok.csv", now=NOW)
    assert r.valid["Timestamp"].tolist() == [pd.Timestamp("2020-03-24 00:17:11"), pd.Timestamp("2025-06-02 11:59:59")]
    assert str(r.valid["Timestamp"].dtype) == "datetime64[ns]"


def test_now_defaults_to_the_clock():
    tomorrow = (datetime.now(UTC) + timedelta(hours=23)).strftime("%Y-%m-%d %H:%M:%S")
    in_three_days = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    r = validate_bytes(csv(f"1,A,T,1,{tomorrow},7", f"2,A,T,1,{in_three_days},7"), "clock.csv")
    assert len(r.valid) == 1 and r.reasons == {TIMESTAMP_OUT_OF_RANGE: 1}


def test_timestamp_max_takes_aware_and_naive_now():
    aware = datetime(2025, 6, 1, 21, 0, tzinfo=UTC).astimezone()  # any zone: the same instant
    assert timestamp_max(aware) == timestamp_max(datetime(2025, 6, 1, 21, 0)) == datetime(2025, 6, 2, 21, 0)


def test_parse_timestamps_never_leaves_the_ns_range():
    s = pd.Series(["2300-01-01 00:00:00", "0000-01-01 00:00:00", "1970-01-01 00:00:00", "x", ""], dtype=str)
    parsed, unparsable, out_of_range = parse_timestamps(s, NOW)
    assert str(parsed.dtype) == "datetime64[ns]"
    assert parsed.isna().tolist() == [True, True, False, True, True]
    assert parsed.iloc[2] == pd.Timestamp(TIMESTAMP_MIN)
    assert unparsable.tolist() == [False, False, False, True, True]
    assert out_of_range.tolist() == [True, True, False, False, False]


def test_parquet_timestamps_out_of_range_are_rejected_per_row(tmp_path):
    stamps = pa.array([datetime(2020, 3, 24, 0, 17, 11), datetime(2300, 1, 1), datetime(1, 1, 1)], pa.timestamp("us"))
    table = pa.table({"userID": ["1", "2", "3"], "assessmentItemID": ["A"] * 3, "testId": ["T"] * 3,
                      "answerCode": ["1"] * 3, "Timestamp": stamps, "KnowledgeTag": ["7"] * 3})
    pq.write_table(table, tmp_path / "far.parquet")
    r = validate_file(tmp_path / "far.parquet", now=NOW)
    assert r.valid["userID"].tolist() == ["1"]
    assert r.rejected["Timestamp"].tolist() == ["2300-01-01 00:00:00", "0001-01-01 00:00:00"]
    assert r.reasons == {TIMESTAMP_OUT_OF_RANGE: 2}


def test_dkt_validate_rejects_the_row_not_the_file(tmp_path, capsys):
    path = tmp_path / "one_bad.csv"
    path.write_bytes(csv(GOOD[0], "9,A3,T1,1,2300-01-01 00:00:00,7", "9,A4,T1,1,0000-01-01 00:00:00,7"))
    assert main(["validate", str(path), "--json"]) == 1  # rows rejected; 2 would mean the file is unusable
    summary = json.loads(capsys.readouterr().out)
    assert summary["valid"] == 1 and summary["reasons"] == {TIMESTAMP_OUT_OF_RANGE: 2}
