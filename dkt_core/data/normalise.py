"""The one normalisation rule of interaction rows: strip, type, dedupe, sort per user by time.

Validation (rows that passed the contract), curation (a parent version plus new rows) and serving (a
request's rows, through the fast path ``dkt_core.serving.frames``, tested equal to this) all produce a
frame by this rule, so a row means the same thing wherever it went:

1. strip: the text columns lose surrounding blanks;
2. type: ``answerCode`` int8, ``Timestamp`` datetime64[ns] (text parsed in the contract's format);
3. dedupe: exact duplicate rows dropped, the first kept;
4. sort: users in order of first appearance, each user's rows by time, stable (equal timestamps keep
   their arrival order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dkt_core.data.columns import COLUMNS, TEXT_COLUMNS, TIME, TIMESTAMP_FORMAT, USER


def normalise(frame: pd.DataFrame, *, timestamps: pd.Series | None = None) -> tuple[pd.DataFrame, int]:
    """(the normalised seed columns of ``frame``, how many exact duplicates were dropped).

    ``timestamps``: the Timestamps already parsed (datetime64[ns], indexed like ``frame``), so validation
    does not parse them twice; otherwise a text column is parsed with ``TIMESTAMP_FORMAT``.
    """
    if timestamps is not None:
        stamps = timestamps.loc[frame.index]
    elif pd.api.types.is_datetime64_any_dtype(frame[TIME]):
        stamps = frame[TIME].astype("datetime64[ns]")
    else:
        stamps = pd.to_datetime(frame[TIME], format=TIMESTAMP_FORMAT).astype("datetime64[ns]")
    typed = pd.DataFrame(
        {c: frame[c].astype(str).str.strip().astype(str) if c in TEXT_COLUMNS
         else stamps if c == TIME else frame[c].astype(np.int8) for c in COLUMNS}
    )
    deduped = typed[~typed.duplicated(keep="first")]
    return sort_interactions(deduped), len(typed) - len(deduped)


def sort_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable sort per user (users in order of first appearance) by time."""
    user_order = pd.factorize(frame[USER])[0]
    order = np.lexsort((frame[TIME].to_numpy(), user_order))
    return frame.iloc[order].reset_index(drop=True)

