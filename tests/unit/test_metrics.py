"""Metrics: AUC equals scikit-learn's, last-item picks each user's last answered row, CIs bracket; every metric
in dkt_core comes from this one module (the ensemble's report, the evaluation report, the models' validation AUC)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from dkt_core.data.split import split_users
from dkt_core.evaluation.metrics import EPS, accuracy, auc, binary_metrics, evaluate_predictions, log_loss
from dkt_core.training.ensemble import SoftVoteEnsemble


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
    new = tiny_log.assign(userID="new-" + tiny_log["userID"])  # as many new users, other ids
    rest2, held2 = split_users(pd.concat([tiny_log, new], ignore_index=True), 0.25, salt="x")
    old = set(tiny_log["userID"])
    assert set(held2["userID"]) & old == set(held["userID"])
    assert set(rest2["userID"]) & old == set(rest["userID"])
    # the new users were really split (both sides got some): the comparison above saw a changed population
    assert set(held2["userID"]) - old and set(rest2["userID"]) - old


def test_log_loss_and_accuracy_match_sklearn_and_clip_once():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = rng.random(300)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0, 1]), rel=1e-12)
    assert accuracy(y, p) == pytest.approx(np.mean((p >= 0.5) == y))
    # certain and wrong: finite, and the clip is the module's one EPS
    assert log_loss(np.array([1, 0]), np.array([0.0, 1.0])) == pytest.approx(-np.log(EPS))


def test_auc_without_rows_is_nan_and_non_finite_scores_are_refused():
    assert np.isnan(auc(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="1 of 3 scores are NaN/inf"):
        auc(np.array([0, 1, 1]), np.array([0.2, np.nan, 0.7]))


def test_the_reports_agree_with_the_one_auc():
    """The ensemble's validation report, the evaluation report and ``auc`` give the same numbers."""
    rng = np.random.default_rng(2)
    n = 600
    y = rng.integers(0, 2, n)
    members = {"a": np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), "b": np.round(rng.random(n), 1)}  # b: ties
    ens = SoftVoteEnsemble.fit(members, y)
    for name, p in members.items():
        assert ens.member_metrics[name] == binary_metrics(y, p)
        assert ens.member_metrics[name]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    blend = ens.predict(members)
    assert ens.metrics == binary_metrics(y, blend)
    report = evaluate_predictions(np.repeat(np.arange(n // 6), 6).astype(str), y, blend, n_boot=0)
    assert report["auc_all"] == ens.metrics["auc"] and report["logloss_all"] == ens.metrics["logloss"]
    assert report["acc_all"] == ens.metrics["acc"]


def test_no_other_metric_implementation_in_dkt_core():
    """One home for AUC / log loss: no dkt_core module but this one imports scikit-learn's metrics."""
    root = Path(__file__).resolve().parents[2] / "dkt_core"
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "evaluation" / "metrics.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn.metrics"):
                found.append(f"{path.relative_to(root.parent)} imports {node.module}")
            elif isinstance(node, ast.Import) and any(a.name.startswith("sklearn.metrics") for a in node.names):
                found.append(f"{path.relative_to(root.parent)} imports sklearn.metrics")
            elif isinstance(node, ast.ImportFrom) and node.module == "sklearn" and any(a.name == "metrics"
                                                                                      for a in node.names):
                found.append(f"{path.relative_to(root.parent)} imports sklearn.metrics")
    assert not found, "use dkt_core.evaluation.metrics instead:\n" + "\n".join(found)
