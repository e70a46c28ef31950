"""Row-local features: decomposition of the item id and time gaps.

Item ids of the i-Scream form ``A060001001`` = ``A`` + head (3) + mid (3) + tail (3). Other ids (plain
numbers in public data sets) degrade gracefully: head = "other", mid = the testId, tail = "other".
Work is done once per distinct item, then gathered, so it stays fast on millions of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED_ID = r"^[A-Za-z]\d{9}$"
ELAPSED_CAP_S = 600


def decompose_items(item_uniques: np.ndarray, item_test: np.ndarray) -> pd.DataFrame:
    """head, mid, tail, paper (head+mid), mid_tail and tail number for each *distinct* item.

    ``item_test`` is each item's test (used as "mid" for ids that are not of the seed form).
    Callers gather rows with the item codes, so string work happens once per item, not per row.
    """
    item = pd.Series(np.asarray(item_uniques, dtype=object), dtype=str)
    seed_form = item.str.fullmatch(SEED_ID).to_numpy(dtype=bool)
    head = np.where(seed_form, item.str.slice(1, 4), "other").astype(str)
    mid = np.where(seed_form, item.str.slice(4, 7), np.asarray(item_test, dtype=object).astype(str)).astype(str)
    tail = np.where(seed_form, item.str.slice(7, 10), "other").astype(str)
    tail_num = np.where(seed_form, pd.to_numeric(item.str.slice(7, 10), errors="coerce"), 0)
    return pd.DataFrame(
        {
            "head": head,
            "mid": mid,
            "tail": tail,
            "paper": np.char.add(head, mid),
            "mid_tail": np.char.add(np.char.add(mid, "_"), tail),
            "tail_num": np.nan_to_num(tail_num.astype(np.float64)),
        }
    )


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
