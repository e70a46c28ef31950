"""The same contract tests over every registered model (iterates ``MODELS``): output shapes, learning a
tiny synthetic pattern, save/load round trip, no look-ahead, determinism with a seed.

Feature frames are synthetic (built here, shaped like ``FeaturePipeline.transform`` output), so the
tests need neither the pipeline nor real data. Configs are shrunk through field names when they exist.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dkt_core.evaluation.metrics import auc as metrics_auc
from dkt_core.features.spec import FeatureSpec
from dkt_core.models import MODELS

N_ITEMS, N_TESTS, N_TAGS = 24, 6, 5

# Small settings applied to whichever fields a model's Config has (others keep their defaults).
TINY = {"hidden": 16, "emb_dim": 4, "max_epochs": 12, "batch_size": 32, "max_seq_len": 16, "train_stride": 8,
        "predict_stride": 4, "patience": 8, "lr": 1e-2, "dropout": 0.0, "num_threads": 1,
        "device": os.environ.get("DKT_TEST_DEVICE", "cpu"),  # DKT_TEST_DEVICE=cuda on a GPU machine
        "n_estimators": 60, "exclude_columns": [], "num_boost_round": 60, "num_leaves": 8, "min_child_samples": 5,
        "min_data_in_leaf": 5, "early_stopping_rounds": 60}


def synthetic_frame(n_users: int, seed: int) -> tuple[pd.DataFrame, FeatureSpec]:
    """A learnable feature frame: P(correct) depends on item difficulty and the previous answer."""
    rng = np.random.default_rng(seed)
    difficulty = np.linspace(-2.0, 2.0, N_ITEMS)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(10, 40))
        items = rng.integers(0, N_ITEMS, n)
        ability = rng.normal(0, 0.5)
        prev, correct_so_far = 1, 0  # prev_answer: 1 = first row, 2 = wrong, 3 = correct
        for t in range(n):
            logit = ability - difficulty[items[t]] + (1.2 if prev == 3 else -0.6 if prev == 2 else 0.0)
            y = int(rng.random() < 1 / (1 + np.exp(-logit)))
            rows.append({"userID": f"u{seed}_{u}", "answerCode": y, "item": items[t] + 2,
                         "test": items[t] % N_TESTS + 2, "tag": items[t] % N_TAGS + 2, "prev_answer": prev,
                         "user_acc": correct_so_far / t if t else 0.5, "count": np.log1p(t),
                         "noise": rng.normal()})
            correct_so_far += y
            prev = 3 if y else 2
    frame = pd.DataFrame(rows)
    for c in ("item", "test", "tag", "prev_answer"):
        frame[c] = frame[c].astype(np.int64)
    for c in ("user_acc", "count", "noise"):
        frame[c] = frame[c].astype(np.float32)
    spec = FeatureSpec(categorical={"item": N_ITEMS + 2, "test": N_TESTS + 2, "tag": N_TAGS + 2, "prev_answer": 4},
                       numeric=["user_acc", "count", "noise"],
                       tabular=["user_acc", "count", "noise", "item", "test", "tag", "prev_answer"])
    return frame, spec


def tiny(model_cls):
    names = {f.name for f in dataclasses.fields(model_cls.Config)}
    return model_cls.Config(**{k: v for k, v in TINY.items() if k in names})


@pytest.fixture(scope="module")
def data():
    train, spec = synthetic_frame(150, seed=1)
    valid, _ = synthetic_frame(25, seed=2)
    return train, valid, spec


class _Fitted(dict):
    """Fits each model on first use, once per module (so ``-k`` selects models cheaply)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def __missing__(self, name):
        train, valid, spec = self.data
        model = MODELS[name](tiny(MODELS[name]))
        result = model.fit(train, valid, spec, seed=7, progress=False)
        self[name] = (model, result)
        return self[name]


@pytest.fixture(scope="module")
def fitted(data):
    return _Fitted(data)


@pytest.mark.parametrize("name", list(MODELS))
def test_predict_shape_and_range(name, fitted, data):
    model, _ = fitted[name]
    _, valid, _ = data
    p = model.predict_proba(valid)
    assert p.shape == (len(valid),) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    assert model.n_parameters() > 0
    # A subset of users, shuffled into another user order, gives the same per-row values.
    users = valid["userID"].unique()[::-1][:5]
    sub = pd.concat([valid[valid["userID"] == u] for u in users])
    np.testing.assert_allclose(model.predict_proba(sub), p[sub.index.to_numpy()], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_predicting_selected_rows_equals_the_full_prediction(name, fitted, data):
    """``rows=`` (what serving asks for: each user's last row, plus a few others, in any order) gives exactly
    the full prediction's values for those rows."""
    model, _ = fitted[name]
    _, valid, _ = data
    full = model.predict_proba(valid)
    last = np.flatnonzero(~valid["userID"].duplicated(keep="last").to_numpy())
    rows = np.random.default_rng(0).permutation(np.r_[last, [0, 3, len(valid) // 2]])
    np.testing.assert_allclose(model.predict_proba(valid, rows=rows), full[rows], rtol=1e-5, atol=1e-6)
    assert model.predict_proba(valid, rows=np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("name", list(MODELS))
def test_learns_synthetic_pattern(name, fitted, data):
    model, result = fitted[name]
    _, valid, _ = data
    auc = roc_auc_score(valid["answerCode"], model.predict_proba(valid))
    assert auc > 0.75, f"{name} did not learn the item-difficulty + previous-answer pattern: AUC {auc:.3f}"
    losses = [h["train_loss"] for h in result.history if "train_loss" in h]
    if len(losses) >= 2:
        assert losses[-1] < losses[0], f"{name} training loss did not decrease: {losses}"


@pytest.mark.parametrize("name", list(MODELS))
def test_reported_validation_auc_is_the_metrics_auc(name, fitted, data):
    """``FitResult.valid_auc`` (the torch loop's early-stopping score, LightGBM's own early-stopping metric)
    is the AUC of ``dkt_core.evaluation.metrics`` on the returned model's validation predictions."""
    model, result = fitted[name]
    _, valid, _ = data
    expected = metrics_auc(valid["answerCode"].to_numpy(), model.predict_proba(valid))
    assert result.valid_auc == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip(name, fitted, data, tmp_path):
    model, _ = fitted[name]
    _, valid, _ = data
    model.save(tmp_path / name)
    loaded = MODELS[name].load(tmp_path / name)
    np.testing.assert_array_equal(loaded.predict_proba(valid), model.predict_proba(valid))
    assert loaded.n_parameters() == model.n_parameters()


@pytest.mark.parametrize("name", list(MODELS))
def test_no_look_ahead(name, fitted, data):
    """Changing a user's interactions after position t (features and labels) and the label at t itself
    must not change the predictions up to t; long users cover several prediction windows."""
    model, _ = fitted[name]
    _, valid, _ = data
    before = model.predict_proba(valid)
    changed = valid.copy()
    rng = np.random.default_rng(0)
    cut = {}
    for user, idx in changed.groupby("userID").indices.items():
        t = int(rng.integers(0, len(idx)))
        cut[user] = idx[t]
        future = idx[t + 1:]
        changed.loc[idx[t], "answerCode"] = 1 - changed.loc[idx[t], "answerCode"]
        changed.loc[future, "item"] = rng.integers(2, N_ITEMS + 2, len(future))
        changed.loc[future, "prev_answer"] = rng.integers(2, 4, len(future))
        changed.loc[future, "user_acc"] = rng.random(len(future)).astype(np.float32)
        changed.loc[future, "answerCode"] = rng.integers(0, 2, len(future))
    after = model.predict_proba(changed)
    past = np.concatenate([valid.groupby("userID").indices[u][valid.groupby("userID").indices[u] <= c]
                           for u, c in cut.items()])
    np.testing.assert_allclose(after[past], before[past], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after, before), "the perturbation changed nothing: the test would be vacuous"


@pytest.mark.parametrize("name", list(MODELS))
def test_deterministic_with_seed(name, fitted, data):
    model, _ = fitted[name]
    train, valid, spec = data
    again = MODELS[name](tiny(MODELS[name]))
    again.fit(train, valid, spec, seed=7, progress=False)
    np.testing.assert_allclose(again.predict_proba(valid), model.predict_proba(valid), rtol=1e-6, atol=1e-7)
