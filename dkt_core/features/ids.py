"""Row-local features: decomposition of the item id and time gaps.

Item ids of the i-Scream form ``A060001001`` = ``A`` + head (3) + mid (3) + tail (3). Other ids (plain
numbers in public data sets) degrade gracefully: head = "other", mid = the testId, tail = "other".
Work is done once per distinct item, then gathered, so it stays fast on millions of rows.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

_SEED_ID = re.compile(r"[A-Za-z]\d{9}")
ELAPSED_CAP_S = 600


def decompose_items(item_uniques: np.ndarray, item_test: np.ndarray) -> dict[str, np.ndarray]:
    """head, mid, tail, paper (head+mid), mid_tail (object arrays) and tail_num (float64) for each
    *distinct* item.

    ``item_test`` is each item's test (used as "mid" for ids that are not of the seed form).
    Callers gather rows with the item codes, so string work happens once per item, not per row. Plain
    arrays, not a DataFrame: building one cost more than the work itself on a serving request.
    """
    rows = [_parts(str(item), str(test)) for item, test in zip(item_uniques, item_test, strict=True)]
    names = ("head", "mid", "tail", "paper", "mid_tail")
    out = {name: np.empty(len(rows), dtype=object) for name in names}
    for j, name in enumerate(names):
        out[name][:] = [r[j] for r in rows]
    out["tail_num"] = np.fromiter((r[5] for r in rows), dtype=np.float64, count=len(rows))
    return out


@lru_cache(maxsize=1 << 18)
def _parts(item: str, test: str) -> tuple[str, str, str, str, str, float]:
    # one call per distinct item (not per row), memoised across calls (serving sees the same items
    # again and again): plain string slicing beats pandas' .str on small inputs
    if _SEED_ID.fullmatch(item):
        head, mid, tail = item[1:4], item[4:7], item[7:10]
        return head, mid, tail, head + mid, f"{mid}_{tail}", float(tail)
    return "other", test, "other", f"other{test}", f"{test}_other", 0.0


def elapsed_seconds(user_codes: np.ndarray, timestamps: pd.Series | np.ndarray) -> np.ndarray:
    """Seconds since the user's previous interaction, capped at 600 s. ``timestamps``: datetimes, or whole
    seconds as int64 (callers that already converted them).

    The seed back-filled a user's first row from the *next* gap; that reads the future, so the first
    row gets 0 here and the ``is_first`` flag / count features tell the models it is the first.
    """
    ts = timestamps if isinstance(timestamps, np.ndarray) and timestamps.dtype == np.int64 else \
        np.asarray(timestamps).astype("datetime64[s]").astype(np.int64)
    gap = np.empty(len(ts), dtype=np.float64)
    gap[:1] = 0.0
    np.subtract(ts[1:], ts[:-1], out=gap[1:])  # int64 differences, stored as float64 (exact)
    gap[1:][user_codes[1:] != user_codes[:-1]] = 0.0  # a user's first row
    return np.clip(gap, 0, ELAPSED_CAP_S, out=gap)
