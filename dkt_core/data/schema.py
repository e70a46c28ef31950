"""The data contract of an interaction log, written as pandera schemas.

The constants it judges against (columns, Timestamp format and range, id rules) live in
``dkt_core.data.columns``. ``RAW_SCHEMA`` judges the raw text of each field; each check is named after
the rejection reason it produces. ``VALID_SCHEMA`` states the types and invariants of the rows that passed (checked on output).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.errors import OutOfBoundsDatetime

from dkt_core.data.columns import (
    ANSWER_CODES,
    COLUMNS,
    ID_MAX_LEN,
    ID_PATTERN,
    ITEM,
    LABEL,
    TAG,
    TEST,
    TIME,
    TIMESTAMP_FORMAT,
    TIMESTAMP_MIN,
    TIMESTAMP_OUT_OF_RANGE,
    USER,
    timestamp_max,
)

# The seed layout with a year that has no 4-digit form (a Parquet value rendered by io.py, e.g.
# "17525-05-06 10:13:20" or "-0044-03-15 12:00:00"): a real instant, out of range.
_FAR_YEAR = r"(?:-[0-9]+|[0-9]{5,})-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"


class JudgedTimestamps(NamedTuple):
    parsed: pd.Series  # datetime64[ns]; NaT unless the value is in range
    unparsable: pd.Series  # bool: not in TIMESTAMP_FORMAT
    out_of_range: pd.Series  # bool: in the format, outside TIMESTAMP_MIN .. timestamp_max(now)


def parse_timestamps(s: pd.Series, now: datetime | None = None) -> JudgedTimestamps:
    """Judge Timestamp text: *unparsable* when not in ``TIMESTAMP_FORMAT``, *out of range* when it is but
    lies outside ``TIMESTAMP_MIN .. timestamp_max(now)`` (0000-01-01, 1969-12-31, 2300-01-01, next week).

    Never raises ``OutOfBoundsDatetime`` and never wraps: values are compared at the resolution pandas
    parses them in (seconds/microseconds hold years 0-9999) and only in-range ones become nanoseconds.
    """
    s = s.astype(str)
    try:
        got = pd.to_datetime(s, format=TIMESTAMP_FORMAT, errors="coerce")
    except (OutOfBoundsDatetime, OverflowError, ValueError):  # not seen with pandas 3; judged below instead
        got = pd.Series(pd.NaT, index=s.index, dtype="datetime64[s]")
    na = got.isna().to_numpy()
    oor = np.zeros(len(s), dtype=bool)
    oor[~na] = ((got[~na] < TIMESTAMP_MIN) | (got[~na] > timestamp_max(now))).to_numpy()
    unparsable = na.copy()
    if na.any():  # rare: is the text a real instant that this resolution cannot hold?
        unparsable[na] = ~_parses_outside_resolution(s[na])
        oor[na] = ~unparsable[na]
    ok = ~(unparsable | oor)
    parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    parsed[ok] = got[ok].astype("datetime64[ns]")  # in range: always representable in nanoseconds
    return JudgedTimestamps(parsed, pd.Series(unparsable, index=s.index), pd.Series(oor, index=s.index))


def _parses_outside_resolution(s: pd.Series) -> np.ndarray:
    """Text pandas could not parse: True where it is the seed layout with a far year (5+ digits or
    negative), or a 4-digit year whose text parses once the year is swapped for one of the same
    leap-ness (what a datetime64[ns] resolution, 1677..2262, rejects as out of bounds)."""
    far = s.str.fullmatch(_FAR_YEAR).fillna(False).astype(bool).to_numpy().copy()
    parts = s.str.extract(r"^([0-9]{4})-(.*)$", expand=True)
    year = pd.to_numeric(parts[0], errors="coerce")
    four = year.notna().to_numpy()
    if four.any():
        y = year[four].astype("int64")
        leap = (((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)).to_numpy()
        proxy = np.where(leap, "2000-", "2001-") + parts.loc[four, 1].to_numpy(dtype=object)
        ok = pd.to_datetime(pd.Series(proxy, dtype=str), format=TIMESTAMP_FORMAT, errors="coerce").notna()
        far[four] = ok.to_numpy()
    return far


def _not_empty(column: str) -> pa.Check:
    return pa.Check(lambda s: s.str.strip() != "", name=f"missing {column}")


def raw_schema(now: datetime | None = None, timestamps: JudgedTimestamps | None = None) -> pa.DataFrameSchema:
    """The contract on raw text, judged at ``now`` (default: the clock when the checks run).

    ``timestamps``: ``parse_timestamps`` of the frame about to be validated, so the two Timestamp checks
    do not parse every value again.
    """

    def judged(s: pd.Series) -> JudgedTimestamps:
        if timestamps is not None and timestamps.unparsable.index.equals(s.index):
            return timestamps
        return parse_timestamps(s, now)

    def text(column: str, *checks: pa.Check) -> pa.Column:
        return pa.Column(str, [_not_empty(column), *checks])

    def short(column: str) -> pa.Check:
        return pa.Check(lambda s: s.str.len() <= ID_MAX_LEN, name=f"bad {column}")

    columns = {
        USER: text(USER, pa.Check(lambda s: s.str.fullmatch(ID_PATTERN), name=f"bad {USER}")),
        ITEM: text(ITEM, short(ITEM)),
        TEST: text(TEST, short(TEST)),
        LABEL: text(LABEL, pa.Check(lambda s: s.isin(list(ANSWER_CODES)), name=f"bad {LABEL}")),
        TIME: text(TIME, pa.Check(lambda s: ~judged(s).unparsable, name=f"unparsable {TIME}"),
                   pa.Check(lambda s: ~judged(s).out_of_range, name=TIMESTAMP_OUT_OF_RANGE)),
        TAG: text(TAG, short(TAG)),
    }
    assert list(columns) == COLUMNS
    return pa.DataFrameSchema(columns, strict=False, coerce=False)


RAW_SCHEMA = raw_schema()

VALID_SCHEMA = pa.DataFrameSchema(
    {USER: pa.Column(str), ITEM: pa.Column(str), TEST: pa.Column(str),
     LABEL: pa.Column("int8", pa.Check.isin([int(c) for c in ANSWER_CODES])),
     TIME: pa.Column("datetime64[ns]"), TAG: pa.Column(str)},
    strict=True,
    ordered=True,
)
