"""User-level splits (never by row): a user's whole history lands on one side.

Membership is a stable hash of (salt, userID), so the same user stays on the same side when new
data arrives — the fixed hold-out set the quality gate compares champion and challenger on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from dkt_core.data.columns import USER


def user_buckets(users: pd.Series | np.ndarray, salt: str) -> np.ndarray:
    """A stable number in [0, 1) per row, from its userID."""
    uniq, inv = np.unique(np.asarray(users).astype(str), return_inverse=True)
    vals = np.array(
        [int.from_bytes(hashlib.blake2b(f"{salt}:{u}".encode(), digest_size=8).digest(), "big") for u in uniq],
        dtype=np.float64,
    )
    return (vals / 2.0**64)[inv]


def split_users(frame: pd.DataFrame, fraction: float, salt: str = "valid") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, selected): ``selected`` holds about ``fraction`` of the users, all of their rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be between 0 and 1, got {fraction}")
    selected = user_buckets(frame[USER], salt) < fraction
    if selected.all() or not selected.any():
        raise ValueError(f"cannot split {frame[USER].nunique()} user(s) by {fraction:.0%}: need more users")
    return frame[~selected].reset_index(drop=True), frame[selected].reset_index(drop=True)
