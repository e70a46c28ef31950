"""User-level bootstrap intervals and the paired AUC difference the gate states."""

from __future__ import annotations

import numpy as np
import pytest

from dkt_core.evaluation.metrics import auc, paired_auc_difference, user_bootstrap, weighted_auc_fn


def _data(n_users=60, rows=30, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{i}" for i in range(n_users)], rows)
    skill = np.repeat(rng.normal(size=n_users), rows)
    y = (rng.random(len(users)) < 1 / (1 + np.exp(-skill))).astype(int)
    good = 1 / (1 + np.exp(-(skill + rng.normal(scale=0.5, size=len(users)))))
    worse = 1 / (1 + np.exp(-(skill + rng.normal(scale=1.5, size=len(users)))))
    return users, y, good, worse


def test_interval_brackets_the_estimate_and_is_reproducible():
    users, y, good, _ = _data()
    fn = weighted_auc_fn(y, good)
    lo, hi = user_bootstrap(users, fn, n_boot=200, seed=0)
    assert lo < auc(y, good) < hi and hi - lo < 0.1
    assert user_bootstrap(users, fn, n_boot=200, seed=0) == (lo, hi)  # fixed seed, same interval
    assert np.isnan(user_bootstrap(users, fn, n_boot=0)).all()  # no resamples: no interval
    assert np.isnan(user_bootstrap(users[:0], fn, n_boot=10)[0])


def test_fewer_users_give_a_wider_interval():
    users, y, good, _ = _data(n_users=200)
    few = np.isin(users, [f"u{i}" for i in range(10)])
    wide = user_bootstrap(users[few], weighted_auc_fn(y[few], good[few]), n_boot=300)
    narrow = user_bootstrap(users, weighted_auc_fn(y, good), n_boot=300)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])


def test_paired_difference_of_a_better_model_excludes_zero():
    users, y, good, worse = _data()
    d = paired_auc_difference(users, y, good, worse, n_boot=300)
    assert d["diff"] == pytest.approx(auc(y, good) - auc(y, worse))
    assert 0 < d["ci95"][0] <= d["diff"] <= d["ci95"][1]
    assert (d["n_users"], d["n_rows"], d["n_boot"]) == (60, 1800, 300)
    same = paired_auc_difference(users, y, good, good, n_boot=100)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]  # paired: identical models never differ


def test_paired_interval_is_narrower_than_independent_ones():
    users, y, good, worse = _data()
    near = np.clip(good + np.random.default_rng(5).normal(scale=0.02, size=len(good)), 0, 1)
    d = paired_auc_difference(users, y, good, near, n_boot=300)
    a = user_bootstrap(users, weighted_auc_fn(y, good), n_boot=300, seed=1)
    b = user_bootstrap(users, weighted_auc_fn(y, near), n_boot=300, seed=2)
    assert d["ci95"][1] - d["ci95"][0] < 0.5 * ((a[1] - a[0]) + (b[1] - b[0])) / 2


def test_unlabelled_rows_are_ignored_and_a_single_class_gives_none():
    users = np.array(["a", "a", "b", "b"])
    d = paired_auc_difference(users, np.array([1, 0, 1, -1]), np.array([.9, .1, .8, .5]), np.array([.5, .5, .5, .5]),
                              n_boot=20)
    assert d["n_rows"] == 3 and d["diff"] == pytest.approx(0.5)
    one = paired_auc_difference(users, np.ones(4), np.arange(4) / 4, np.arange(4) / 4, n_boot=20)
    assert one["diff"] is None and one["ci95"] == [None, None]
