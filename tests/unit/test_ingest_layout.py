"""Pure logic of the ingestion: key layout, run-id slugs, version names, curated merge."""

from __future__ import annotations

import pandas as pd
import pytest

from dkt_core.ingest import curated, layout


def test_run_slug_is_key_safe_and_distinguishes_run_ids():
    a = layout.run_slug("manual__2026-01-02T03:04:05+00:00")
    b = layout.run_slug("manual__2026-01-02T03:04:05-00:00")
    assert ":" not in a and "+" not in a
    assert a != b  # the hash suffix keeps look-alike run ids apart
    assert layout.run_slug("run_1") == "run_1"  # already safe: unchanged
    with pytest.raises(ValueError, match="idempotency key"):
        layout.run_slug("")


def test_version_names_round_trip():
    assert layout.version_name(7) == "v=000007"
    assert layout.parse_version("v=000007\n") == 7
    assert layout.dataset_key(12) == "curated/v=000012/interactions.parquet"
    with pytest.raises(ValueError, match="curated version name"):
        layout.parse_version("latest")


def _frame(rows):
    df = pd.DataFrame(rows, columns=curated.COLUMNS)
    df["answerCode"] = df["answerCode"].astype("int8")
    df["Timestamp"] = pd.to_datetime(df["Timestamp"]).astype("datetime64[ns]")
    return df


def test_merge_drops_exact_duplicates_and_sorts_per_user_by_time():
    parent = _frame([
        ["u1", "A1", "T1", 1, "2020-01-01 00:00:01", "7"],
        ["u2", "A1", "T1", 0, "2020-01-01 00:00:05", "7"],
    ])
    new = _frame([
        ["u1", "A2", "T1", 0, "2020-01-01 00:00:00", "7"],  # earlier than u1's first row
        ["u2", "A1", "T1", 0, "2020-01-01 00:00:05", "7"],  # exact duplicate of a parent row
        ["u2", "A1", "T1", 1, "2020-01-01 00:00:05", "7"],  # same time, different answer: kept
    ])
    merged = curated.merge(parent, new)
    assert len(merged) == 4
    assert merged["userID"].tolist() == ["u1", "u1", "u2", "u2"]
    assert merged["assessmentItemID"].tolist()[:2] == ["A2", "A1"]
    assert merged["answerCode"].tolist()[2:] == [0, 1]  # equal timestamps keep arrival order
    assert merged.dtypes.equals(parent.dtypes)


def test_merge_without_parent_keeps_new_rows():
    new = _frame([["u1", "A1", "T1", 1, "2020-01-01 00:00:01", "7"]])
    assert len(curated.merge(None, new)) == 1
