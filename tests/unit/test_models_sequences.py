"""The sequence dataset builder: sequences, augmentations, training and prediction windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dkt_core.features.spec import FeatureSpec
from dkt_core.models.sequences import build_sequences, iterate_batches, predict_windows, train_windows

SPEC = FeatureSpec(categorical={"item": 50, "test": 10, "head": 4, "mid": 6}, numeric=["x"])


def frame(lengths: list[int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    return pd.DataFrame({
        "userID": np.repeat([f"u{i}" for i in range(len(lengths))], lengths),
        "answerCode": rng.integers(0, 2, n), "item": rng.integers(2, 50, n),
        # tests come in runs of 3 rows, so "test changes" are well defined
        "test": (np.arange(n) // 3) % 8 + 2, "head": rng.integers(2, 4, n), "mid": rng.integers(2, 6, n),
        "x": rng.normal(size=n).astype(np.float32),
    })


def test_one_sequence_per_user_in_time_order():
    f = frame([5, 1, 7])
    d = build_sequences(f, SPEC)
    assert list(d.seq_end - d.seq_start) == [5, 1, 7]
    np.testing.assert_array_equal(d.order, np.arange(13))
    assert d.cat.shape == (14, 4) and (d.cat[-1] == 0).all() and d.label[-1] == -1


def test_group_by_and_split_every_k_tests():
    f = frame([30, 12])
    d = build_sequences(f, SPEC, group_by=("head", "mid"))
    n_groups = f.groupby(["userID", "head", "mid"]).ngroups
    assert len(d.seq_start) == n_groups
    for s, e in zip(d.seq_start, d.seq_end, strict=True):
        rows = d.order[s:e]
        assert (np.diff(rows) > 0).all(), "time order inside a sequence"
        assert f.iloc[rows][["userID", "head", "mid"]].nunique().max() == 1
    d = build_sequences(f, SPEC, split_every_tests=2)
    # user 0: 30 rows = 10 tests -> 5 blocks of 6 rows; user 1: 12 rows = 4 tests -> 2 blocks
    assert list(d.seq_end - d.seq_start) == [6, 6, 6, 6, 6, 6, 6]


@pytest.mark.parametrize("length,max_len,stride", [(1, 4, 2), (4, 4, 2), (5, 4, 2), (23, 8, 3), (40, 10, 10)])
def test_predict_windows_write_every_row_once_with_bounded_context(length, max_len, stride):
    d = build_sequences(frame([length, 3]), SPEC)
    start, end, first = predict_windows(d, max_len, stride)
    written = np.zeros(d.n_rows, int)
    for s, e, w in zip(start, end, first, strict=True):
        assert e - s <= max_len
        for p in range(w, e):
            written[p] += 1
            seq = np.searchsorted(d.seq_end, p, side="right")
            context = p - s
            if p - d.seq_start[seq] >= max_len:  # long history: at least max_len - stride rows of context
                assert max_len - stride <= context <= max_len - 1
            else:  # short history: the whole past
                assert s == d.seq_start[seq]
    np.testing.assert_array_equal(written, 1)


def test_train_windows_cover_sequences_and_random_offsets_vary():
    d = build_sequences(frame([50, 7]), SPEC)
    s0, e0 = train_windows(d, 10, 5, None)
    covered = np.zeros(d.n_rows, bool)
    for s, e in zip(s0, e0, strict=True):
        covered[s:e] = True
        assert e - s <= 10
    assert covered.all()
    rng = np.random.default_rng(0)
    starts = {tuple(train_windows(d, 10, 5, rng)[0]) for _ in range(10)}
    assert len(starts) > 1, "random windows should change between epochs"


def test_batches_pad_on_the_right():
    d = build_sequences(frame([3, 6]), SPEC)
    start, end, _ = predict_windows(d, 8, 4)
    (batch, sel), = list(iterate_batches(d, start, end, 16, 8))
    assert batch.cat.shape == (2, 6, 4) and batch.num.shape == (2, 6, 1)
    short = int(np.argmin(batch.valid.sum(1)))
    assert batch.valid[short].tolist() == [True] * 3 + [False] * 3
    assert (batch.cat[short, 3:] == 0).all() and (batch.label[short, 3:] == -1).all()


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="mid"):
        build_sequences(frame([3]).drop(columns=["mid"]), SPEC)
