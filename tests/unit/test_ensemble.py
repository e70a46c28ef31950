"""The soft-vote ensemble: weights fit on validation predictions, stored and reloaded as JSON."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dkt_core.training.ensemble import SoftVoteEnsemble


def _members(n: int = 4000, seed: int = 0):
    """Two members that each see half of the signal, one that is pure noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b)))).astype(np.int64)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    return {"half_a": sig(a), "half_b": sig(b), "noise": rng.random(n)}, y


def test_weights_are_fit_non_negative_and_sum_to_one():
    preds, y = _members()
    ens = SoftVoteEnsemble.fit(preds, y)
    w = ens.weights
    assert set(w) == {"half_a", "half_b", "noise"}
    assert all(v >= 0 for v in w.values()) and sum(w.values()) == pytest.approx(1.0)
    assert w["noise"] < 0.05, f"a useless member should get (almost) no weight: {w}"
    assert w["half_a"] > 0.3 and w["half_b"] > 0.3


def test_blend_beats_every_member_on_validation():
    preds, y = _members()
    ens = SoftVoteEnsemble.fit(preds, y)
    blend_auc = roc_auc_score(y, ens.predict(preds))
    assert blend_auc == pytest.approx(ens.metrics["auc"])
    for name, p in preds.items():
        assert blend_auc > roc_auc_score(y, p) + 0.02, name
        assert ens.member_metrics[name]["auc"] == pytest.approx(roc_auc_score(y, p))


def test_save_load_round_trip(tmp_path):
    preds, y = _members()
    ens = SoftVoteEnsemble.fit(preds, y)
    loaded = SoftVoteEnsemble.load(ens.save(tmp_path / "ensemble.json"))
    assert loaded.weights == ens.weights and loaded.metrics == ens.metrics
    np.testing.assert_array_equal(loaded.predict(preds), ens.predict(preds))


def test_single_member_gets_all_weight():
    preds, y = _members()
    ens = SoftVoteEnsemble.fit({"half_a": preds["half_a"]}, y)
    assert ens.weights == {"half_a": 1.0}


def test_errors_name_the_problem():
    preds, y = _members()
    with pytest.raises(ValueError, match="labels"):
        SoftVoteEnsemble.fit(preds, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        SoftVoteEnsemble.fit({"bad": np.full(len(y), np.nan), **preds}, y)
    ens = SoftVoteEnsemble.fit(preds, y)
    with pytest.raises(ValueError, match="noise"):
        ens.predict({"half_a": preds["half_a"], "half_b": preds["half_b"]})
    with pytest.raises(ValueError, match="at least one"):
        SoftVoteEnsemble.fit({}, y)
