"""The data contract of an interaction log, written as pandera schemas.

``RAW_SCHEMA`` judges the raw text of each field; each check is named after the rejection reason it
produces. ``VALID_SCHEMA`` states the types and invariants of the rows that passed (checked on output).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
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


# Years pandas holds as datetime64[ns]: only text dated inside this window is parsed as it is, so no
# value can raise OutOfBoundsDatetime (or wrap) whatever resolution pandas picks.
_SAFE_YEARS = (1970, 2261)
# The seed layout with a year that has no 4-digit form (a Parquet value rendered by io.py, e.g.
# "17525-05-06 10:13:20" or "-0044-03-15 12:00:00"): a real instant, out of range.
_FAR_YEAR = r"(?:-[0-9]+|[0-9]{5,})-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"


def timestamp_max(now: datetime | None = None) -> datetime:
    """The latest accepted Timestamp (naive UTC) at ``now`` (default: the current time; naive = UTC)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.replace(tzinfo=None) + TIMESTAMP_MAX_FUTURE


def parse_timestamps(s: pd.Series, now: datetime | None = None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Judge Timestamp text: (datetime64[ns] values, NaT unless valid; unparsable mask; out-of-range mask).

    *Unparsable*: not in ``TIMESTAMP_FORMAT``. *Out of range*: in the format, but outside
    ``TIMESTAMP_MIN .. timestamp_max(now)`` (e.g. 0000-01-01, 1969-12-31, 2300-01-01, next week).
    """
    s = s.astype(str)
    parts = s.str.extract(r"^([0-9]{4})-(.*)$", expand=True)
    year = pd.to_numeric(parts[0], errors="coerce")
    window = year.between(*_SAFE_YEARS).to_numpy()
    parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    unparsable = np.ones(len(s), dtype=bool)
    out_of_range = np.zeros(len(s), dtype=bool)
    if window.any():
        got = pd.to_datetime(s[window], format=TIMESTAMP_FORMAT, errors="coerce").astype("datetime64[ns]")
        parsed[window] = got
        unparsable[window] = got.isna().to_numpy()
        out_of_range[window] = ((got < TIMESTAMP_MIN) | (got > timestamp_max(now))).to_numpy()
    # Any other 4-digit year: does the text parse with the year swapped for one of the same leap-ness?
    far = (year.notna() & ~window).to_numpy()
    if far.any():
        y = year[far].astype("int64")
        leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
        proxy = np.where(leap.to_numpy(), "2000-", "2001-") + parts.loc[far, 1].astype(str).to_numpy(dtype=object)
        ok = pd.to_datetime(pd.Series(proxy, dtype=str), format=TIMESTAMP_FORMAT, errors="coerce").notna().to_numpy()
        unparsable[far] = ~ok
        out_of_range[far] = ok
    far_year = s.str.fullmatch(_FAR_YEAR).fillna(False).astype(bool).to_numpy()
    unparsable[far_year] = False
    out_of_range[far_year] = True
    parsed[unparsable | out_of_range] = pd.NaT
    return parsed, pd.Series(unparsable, index=s.index), pd.Series(out_of_range, index=s.index)


def _not_empty(column: str) -> pa.Check:
    return pa.Check(lambda s: s.str.strip() != "", name=f"missing {column}")


def raw_schema(now: datetime | None = None) -> pa.DataFrameSchema:
    """The contract on raw text, judged at ``now`` (default: the clock when the checks run)."""
    return pa.DataFrameSchema(
        {
            "userID": pa.Column(
                str, [_not_empty("userID"), pa.Check(lambda s: s.str.fullmatch(ID_PATTERN), name="bad userID")]
            ),
            "assessmentItemID": pa.Column(
                str, [_not_empty("assessmentItemID"), pa.Check(lambda s: s.str.len() <= 64, name="bad assessmentItemID")]
            ),
            "testId": pa.Column(str, [_not_empty("testId"), pa.Check(lambda s: s.str.len() <= 64, name="bad testId")]),
            "answerCode": pa.Column(
                str, [_not_empty("answerCode"), pa.Check(lambda s: s.isin(["0", "1", "-1"]), name="bad answerCode")]
            ),
            "Timestamp": pa.Column(
                str,
                [
                    _not_empty("Timestamp"),
                    pa.Check(lambda s: ~parse_timestamps(s, now)[1], name="unparsable Timestamp"),
                    pa.Check(lambda s: ~parse_timestamps(s, now)[2], name=TIMESTAMP_OUT_OF_RANGE),
                ],
            ),
            "KnowledgeTag": pa.Column(
                str, [_not_empty("KnowledgeTag"), pa.Check(lambda s: s.str.len() <= 64, name="bad KnowledgeTag")]
            ),
        },
        strict=False,
        coerce=False,
    )


RAW_SCHEMA = raw_schema()

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
