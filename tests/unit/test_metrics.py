"""Metrics: AUC equals scikit-learn's, last-item picks each user's last answered row, CIs bracket."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dkt_core.data.split import split_users
from dkt_core.evaluation.metrics import auc, evaluate_predictions


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.5 + y * 0.2, 2)  # many ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_last_item_and_bootstrap():
    users = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2)
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 1, 0, -1])  # d's last row is a target, not scored
    proba = np.array([0.9, 0.2, 0.8, 0.3, 0.7, 0.1, 0.6, 0.9, 0.4, 0.5])
    m = evaluate_predictions(users, labels, proba, n_boot=50)
    assert m["n_users"] == 4 and m["n_rows"] == 9
    # last answered rows: a->0.8(1), b->0.1(0), c->0.9(1), d->0.4(0): perfectly ranked
    assert m["auc_last"] == 1.0 and m["acc_last"] == 1.0
    lo, hi = m["auc_all_ci95"]
    assert lo <= m["auc_all"] <= hi


def test_single_class_gives_null_not_nan():
    m = evaluate_predictions(np.array(["a", "a"]), np.array([1, 1]), np.array([0.5, 0.6]), n_boot=5)
    assert m["auc_all"] is None


def test_split_by_user_is_disjoint_and_stable(tiny_log):
    rest, held = split_users(tiny_log, 0.25, salt="x")
    assert not set(rest["userID"]) & set(held["userID"])
    assert len(rest) + len(held) == len(tiny_log)
    # adding rows for new users does not move existing users between sides
    _, held2 = split_users(tiny_log.assign(userID=tiny_log["userID"]), 0.25, salt="x")
    assert set(held2["userID"]) == set(held["userID"])
