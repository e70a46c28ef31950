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


def decompose_items(item_uniques: np.ndarray, item_test: np.ndarray) -> pd.DataFrame:
    """head, mid, tail, paper (head+mid), mid_tail and tail number for each *distinct* item.

    ``item_test`` is each item's test (used as "mid" for ids that are not of the seed form).
    Callers gather rows with the item codes, so string work happens once per item, not per row.
    """
    rows = [_parts(str(item), str(test)) for item, test in zip(item_uniques, item_test, strict=True)]
    frame = pd.DataFrame(rows, columns=["head", "mid", "tail", "tail_num"])
    head, mid, tail = (frame[c].to_numpy(dtype=object) for c in ("head", "mid", "tail"))
    frame["paper"] = head + mid
    frame["mid_tail"] = mid + "_" + tail
    frame["tail_num"] = frame["tail_num"].astype(np.float64)
    return frame


@lru_cache(maxsize=1 << 18)
def _parts(item: str, test: str) -> tuple[str, str, str, float]:
    # one call per distinct item (not per row), memoised across calls (serving sees the same items
    # again and again): plain string slicing beats pandas' .str on small inputs
    if _SEED_ID.fullmatch(item):
        return item[1:4], item[4:7], item[7:10], float(item[7:10])
    return "other", test, "other", 0.0


def elapsed_seconds(user_codes: np.ndarray, timestamps: pd.Series) -> np.ndarray:
    """Seconds since the user's previous interaction, capped at 600 s.

    The seed back-filled a user's first row from the *next* gap; that reads the future, so the first
    row gets 0 here and the ``is_first`` flag / count features tell the models it is the first.
    """
    ts = timestamps.to_numpy().astype("datetime64[s]").astype(np.int64)
    gap = np.zeros(len(ts), dtype=np.float64)
    gap[1:] = ts[1:] - ts[:-1]
    first = np.ones(len(ts), dtype=bool)
    first[1:] = user_codes[1:] != user_codes[:-1]
    gap[first] = 0.0
    return np.clip(gap, 0, ELAPSED_CAP_S)
