"""Report pieces: PSI, ROC/calibration points, figures and the HTML page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dkt_core.evaluation.metrics import auc
from dkt_core.retrain import plots
from dkt_core.retrain.drift import drift_summary as _drift_summary
from dkt_core.retrain.drift import psi, quality_summary
from dkt_core.retrain.report import render_html
from dkt_core.settings import RetrainSettings, load


def drift_summary(*args, **kw):
    """The step with the settings an edge would load (this test's environment)."""
    return _drift_summary(*args, settings=load(RetrainSettings), **kw)

PNG = b"\x89PNG\r\n\x1a\n"


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    a = pd.Series(list("aabbccdd") * 50)
    assert psi(a, a.sample(frac=1, random_state=0)) == pytest.approx(0.0, abs=1e-9)
    assert psi(a, pd.Series(list("aaaaaaab") * 50)) > 0.25
    assert psi(a, pd.Series(list("xyz") * 10)) > 1  # unseen categories land in "other"
    assert psi(a, pd.Series([], dtype=str)) is None


def test_roc_points_integrate_to_the_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    fpr, tpr = plots.roc_points(y, p)
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(y, p), abs=1e-9)


def test_calibration_points_of_a_calibrated_model():
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(float)
    mean_p, obs, count = plots.calibration_points(y, p)
    assert count.sum() == 20000 and np.abs(mean_p - obs).max() < 0.03


def test_figures_are_png():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.1, 0.8, 0.4, 0.6, 0.9])
    assert plots.roc_png(y, {"a": p}).startswith(PNG)
    assert plots.calibration_png(y, {"a": p, "b": 1 - p}).startswith(PNG)
    assert plots.live_auc_png([{"data_version": "v=000002", "auc": 0.7}]).startswith(PNG)
    assert plots.live_auc_png([]).startswith(PNG)


def test_drift_and_quality_summaries(tiny_log):
    cut = tiny_log["Timestamp"].quantile(0.8)
    parent, new = tiny_log[tiny_log["Timestamp"] < cut], tiny_log[tiny_log["Timestamp"] >= cut]
    d = drift_summary(parent, new)
    assert d["new_rows"]["rows"] == len(new) and d["parent"]["users"] == parent["userID"].nunique()
    assert set(d["psi"]) == {"assessmentItemID", "testId", "KnowledgeTag"} and d["verdict"]
    assert drift_summary(None, new)["psi"] == {}
    q = quality_summary({"sources": [
        {"key": "a.csv", "status": "validated", "rows_read": 10, "rows_valid": 8, "rows_rejected": 2,
         "reasons": {"bad answerCode": 2}},
        {"key": "b.bin", "status": "quarantined", "reason": "not a CSV"}]})
    assert (q["rows_read"], q["rows_valid"], q["rows_rejected"], q["objects_quarantined"]) == (10, 8, 2, 1)
    assert q["reasons"] == {"bad answerCode": 2}


def test_html_report_has_every_section(tiny_log):
    cut = tiny_log["Timestamp"].quantile(0.8)
    metrics = {"auc_all": 0.75, "auc_last": 0.7, "n_users": 10, "n_rows": 100}
    doc = {"run_id": "manual__<x>", "model_version": "m2", "data_version": "v=000002", "parent_version": "v=000001",
           "created_at": "now", "evaluation": {"challenger": metrics, "champion": {**metrics, "auc_all": 0.8},
                                              "champion_version": "m1"},
           "gate": {"promote": False, "reason": "challenger auc_all 0.7500 vs champion m1 0.8000: champion kept"},
           "quality": quality_summary({"sources": []}),
           "drift": drift_summary(tiny_log[tiny_log["Timestamp"] < cut], tiny_log[tiny_log["Timestamp"] >= cut]),
           "live_trend": [{"data_version": "v=000002", "auc": 0.74}]}
    page = render_html(doc)
    for part in ("KEEP CHAMPION", "champion kept", "roc.png", "calibration.png", "live_auc.png", "PSI KnowledgeTag",
                 "Data quality", "champion m1", "0.8000", "manual__&lt;x&gt;"):
        assert part in page, part


def test_drift_of_a_handful_of_rows_is_too_few_to_judge(tiny_log):
    cut = tiny_log["Timestamp"].quantile(0.8)
    parent, new = tiny_log[tiny_log["Timestamp"] < cut], tiny_log[tiny_log["Timestamp"] >= cut]
    nine = new[new["userID"].isin(new["userID"].unique()[:3])].groupby("userID").head(3)
    d = drift_summary(parent, nine, n_boot=100)
    assert (d["n_rows"], d["n_users"], d["judged"]) == (9, 3, False)
    assert d["verdict"] == "too few to judge" and d["judgement"].startswith("too few to judge: 9 rows from 3 users")
    assert max(d["psi"].values()) > 0.25  # what used to be reported as a "major shift"
    full = drift_summary(parent, new, n_boot=100)
    assert full["judged"] and full["verdict"] in ("stable", "moderate shift", "major shift")
    assert set(full["psi_noise95"]) == set(full["psi"])
    assert set(full["psi_beyond_noise"]) <= set(full["psi"])
    # the same rows as the parent: every PSI is inside its noise range, nothing counts as drift
    same = drift_summary(parent, parent.sample(frac=0.3, random_state=0), n_boot=100)
    assert same["psi_beyond_noise"] == [] and same["verdict"] == "stable"
    lo, hi = full["accuracy_shift_ci95"]
    assert lo <= full["accuracy_shift"] <= hi


def test_html_report_shows_counts_intervals_and_the_paired_difference(tiny_log):
    cut = tiny_log["Timestamp"].quantile(0.8)
    parent, new = tiny_log[tiny_log["Timestamp"] < cut], tiny_log[tiny_log["Timestamp"] >= cut]
    nine = new.groupby("userID").head(3).iloc[:9]
    metrics = {"auc_all": 0.75, "auc_all_ci95": [0.73, 0.77], "n_users": 10, "n_rows": 100}
    doc = {"run_id": "r", "model_version": "m2", "data_version": "v=000002", "parent_version": "v=000001",
           "created_at": "now", "evaluation": {"challenger": metrics, "champion": metrics, "champion_version": "m1",
                                              "paired": {"diff": 0.0021, "ci95": [-0.001, 0.005], "n_users": 10,
                                                         "n_rows": 100, "n_boot": 200}},
           "gate": {"promote": True, "reason": "ok", "metric": "auc_all", "tolerance": 0.002},
           "quality": quality_summary({"sources": []}), "drift": drift_summary(parent, nine, n_boot=50),
           "live_trend": [{"data_version": "v=000002", "auc": 0.4, "auc_ci95": [0.1, 0.8], "n_scored": 9,
                           "n_users": 3, "judged": False, "judgement": "too few to judge: 9 rows from 3 users"}]}
    page = render_html(doc)
    for part in ("Paired difference", "0.0021", "[-0.001, 0.005]", "too few to judge: 9 rows from 3 users",
                 "n = 9 new rows from 3 users", "bootstrap resamples", "tolerance"):
        assert part in page, part
    assert plots.live_auc_png(doc["live_trend"]).startswith(PNG)


def _shares(n_users: int, rows_per_user: int, share_a: float, prefix: str) -> pd.DataFrame:
    """``n_users`` users whose items, tests and tags are "a" in ``share_a`` of all rows, else "b"."""
    n = n_users * rows_per_user
    cat = np.where(np.arange(n) < round(share_a * n), "a", "b")
    return pd.DataFrame({"userID": [f"{prefix}{i // rows_per_user}" for i in range(n)],
                         "assessmentItemID": cat, "testId": cat, "KnowledgeTag": cat,
                         "answerCode": np.arange(n) % 2,
                         "Timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="min")})


@pytest.mark.parametrize(("share_a", "verdict"), [
    (0.50, "stable"), (0.62, "stable"), (0.70, "moderate shift"), (0.80, "major shift"),
])
def test_drift_verdict_at_known_psi_values(share_a, verdict):
    # parent 50/50, new rows share_a/(1-share_a): PSI = sum((p - q) ln(p / q)) in closed form
    parent, new = _shares(50, 10, 0.5, "p"), _shares(40, 10, share_a, "n")
    expected = sum((p - 0.5) * np.log(p / 0.5) for p in (share_a, 1 - share_a))
    d = drift_summary(parent, new, n_boot=0)  # no resamples: no noise range, every PSI counts
    assert d["judged"] and (d["n_rows"], d["n_users"]) == (400, 40)
    for col in ("assessmentItemID", "testId", "KnowledgeTag"):
        assert d["psi"][col] == pytest.approx(expected, abs=1e-12)
    assert d["verdict"] == verdict, (expected, d["verdict"])
