"""The one definition of "the same features" for the out-of-core road's equality tests (unit and realdata)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def assert_features_equal(old: pd.DataFrame, new: pd.DataFrame) -> None:
    """Codes, labels and users bit for bit; float32 numerics bit for bit but for at most one float32 step
    on a few rows of the residual features (running sums restart per chunk)."""
    assert list(old.columns) == list(new.columns) and len(old) == len(new)
    for c in old.columns:
        a, b = old[c].to_numpy(), new[c].to_numpy()
        if c in ("user_resid", "user_tag_resid"):
            step = np.spacing(np.maximum(np.abs(a), np.abs(b)))  # one float32 step at that value
            assert (np.abs(b - a) <= step).all(), f"{c}: differs by more than one float32 step"
            assert np.count_nonzero(a != b) <= max(2, len(a) // 10_000), c
        else:
            np.testing.assert_array_equal(b, a, err_msg=c)
