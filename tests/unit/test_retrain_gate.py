"""The promotion gate: challenger AUC >= champion AUC - tolerance on the same hold-out."""

from __future__ import annotations

import pytest

from dkt_core.retrain.gate import decide


def test_first_model_is_promoted():
    d = decide(0.70, None, tolerance=0.002, champion_version=None)
    assert d.promote and "no champion" in d.reason


@pytest.mark.parametrize(("challenger", "champion", "promote"), [
    (0.80, 0.78, True),     # better
    (0.779, 0.780, True),   # worse, but within the tolerance
    (0.778, 0.780, True),   # exactly at the threshold
    (0.7779, 0.780, False),  # just below it
    (0.60, 0.80, False),
])
def test_tolerance_boundary(challenger, champion, promote):
    d = decide(challenger, champion, tolerance=0.002, champion_version="m1")
    assert d.promote is promote
    assert ("champion kept" in d.reason) is (not promote)
    assert "m1" in d.reason and d.tolerance == 0.002


def test_force_overrides_a_rejection_and_says_so():
    d = decide(0.60, 0.80, tolerance=0.002, champion_version="m1", force=True)
    assert d.promote and d.forced and "force_deploy" in d.reason
    assert not decide(0.81, 0.80, tolerance=0.0, champion_version="m1", force=True).forced


def test_undefined_metrics():
    assert not decide(None, 0.8, tolerance=0.002, champion_version="m1").promote
    assert decide(None, 0.8, tolerance=0.002, champion_version="m1", force=True).promote
    assert decide(0.7, None, tolerance=0.002, champion_version="m1").promote  # nothing to beat


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerance"):
        decide(0.8, 0.8, tolerance=-0.1, champion_version="m1")


def test_the_reason_states_the_paired_difference_with_its_interval():
    paired = {"diff": -0.0012, "ci95": [-0.0040, 0.0015], "n_users": 240, "n_rows": 18000, "n_boot": 200}
    d = decide(0.7788, 0.7800, tolerance=0.002, champion_version="m1", paired=paired)
    assert d.promote  # the rule is unchanged: within the tolerance
    assert "difference challenger - champion auc_all -0.0012 (95 % CI -0.0040..+0.0015; paired bootstrap of " \
           "240 hold-out users, 18000 rows, 200 resamples)" in d.reason
    assert (d.difference, d.difference_ci95, d.n_users, d.n_rows) == (-0.0012, [-0.0040, 0.0015], 240, 18000)
    kept = decide(0.70, 0.78, tolerance=0.002, champion_version="m1", paired={**paired, "diff": -0.08})
    assert not kept.promote and "champion kept; difference challenger - champion auc_all -0.0800" in kept.reason
    assert "interval undefined" in decide(0.8, 0.8, tolerance=0.0, champion_version="m1",
                                          paired={**paired, "ci95": [None, None]}).reason
    assert decide(0.8, None, tolerance=0.0, champion_version=None).difference is None  # first model: no pair
