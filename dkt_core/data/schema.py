"""The data contract of an interaction log, written as pandera schemas.

``RAW_SCHEMA`` judges the raw text of each field; each check is named after the rejection reason it
produces. ``VALID_SCHEMA`` states the types and invariants of the rows that passed (checked on output).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pandera.pandas as pa

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
ID_PATTERN = r"[A-Za-z0-9_.:\-]{1,64}"

# The documented range of a Timestamp (naive UTC): from TIMESTAMP_MIN up to "now" plus
# TIMESTAMP_MAX_FUTURE (clock skew between devices). Rows outside it are rejected with
# TIMESTAMP_OUT_OF_RANGE; the API answers 400. Also keeps every value inside pandas' datetime64[ns]
# range (1677-09-21 .. 2262-04-11), which silently wrapped or raised before.
TIMESTAMP_MIN = datetime(1970, 1, 1)
TIMESTAMP_MAX_FUTURE = timedelta(days=1)
TIMESTAMP_OUT_OF_RANGE = "Timestamp out of range"


def timestamp_max(now: datetime | None = None) -> datetime:
    """The latest accepted Timestamp (naive UTC) at ``now`` (default: the current time)."""
    now = now or datetime.now(UTC)
    return now.replace(tzinfo=None) + TIMESTAMP_MAX_FUTURE


def _parses_as_timestamp(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, format=TIMESTAMP_FORMAT, errors="coerce").notna()


def _not_empty(column: str) -> pa.Check:
    return pa.Check(lambda s: s.str.strip() != "", name=f"missing {column}")


RAW_SCHEMA = pa.DataFrameSchema(
    {
        "userID": pa.Column(str, [_not_empty("userID"), pa.Check(lambda s: s.str.fullmatch(ID_PATTERN), name="bad userID")]),
        "assessmentItemID": pa.Column(
            str, [_not_empty("assessmentItemID"), pa.Check(lambda s: s.str.len() <= 64, name="bad assessmentItemID")]
        ),
        "testId": pa.Column(str, [_not_empty("testId"), pa.Check(lambda s: s.str.len() <= 64, name="bad testId")]),
        "answerCode": pa.Column(
            str, [_not_empty("answerCode"), pa.Check(lambda s: s.isin(["0", "1", "-1"]), name="bad answerCode")]
        ),
        "Timestamp": pa.Column(
            str, [_not_empty("Timestamp"), pa.Check(_parses_as_timestamp, name="unparsable Timestamp")]
        ),
        "KnowledgeTag": pa.Column(
            str, [_not_empty("KnowledgeTag"), pa.Check(lambda s: s.str.len() <= 64, name="bad KnowledgeTag")]
        ),
    },
    strict=False,
    coerce=False,
)

VALID_SCHEMA = pa.DataFrameSchema(
    {
        "userID": pa.Column(str),
        "assessmentItemID": pa.Column(str),
        "testId": pa.Column(str),
        "answerCode": pa.Column("int8", pa.Check.isin([-1, 0, 1])),
        "Timestamp": pa.Column("datetime64[ns]"),
        "KnowledgeTag": pa.Column(str),
    },
    strict=True,
    ordered=True,
)
