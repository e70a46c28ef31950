"""LightGBM on a log of tens of millions of rows (issue 15 item 3): each tree sees at most ``max_bagged_rows``
bagged rows in the column-wise layout, and early stopping watches at most about ``max_valid_rows`` rows.
The caps are set tiny here so a small synthetic matrix crosses them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dkt_core.features.spec import FeatureSpec
from dkt_core.models.lgbm import FeatureChunk, LGBMConfig, LGBMModel, watched_chunks


def _chunks(tmp_path, name: str, sizes: list[int], seed: int) -> list[FeatureChunk]:
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(sizes):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        y = (rng.random(n) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(np.int8)  # column 0 carries the signal
        c = FeatureChunk(tmp_path / f"{name}{i}.x.npy", tmp_path / f"{name}{i}.y.npy")
        np.save(c.x, x)
        np.save(c.y, y)
        out.append(c)
    return out


def test_params_switch_only_above_the_cap():
    model = LGBMModel(LGBMConfig(bagging_fraction=0.8, max_bagged_rows=1_000))
    small = model._params(0, 1_000)
    assert small["bagging_fraction"] == 0.8 and small.get("force_row_wise") and "force_col_wise" not in small
    large = model._params(0, 4_000)
    assert large["bagging_fraction"] == pytest.approx(0.25) and large.get("force_col_wise")
    assert "force_row_wise" not in large  # LightGBM refuses both at once


def test_watched_chunks_are_all_below_the_cap_and_evenly_spread_above(tmp_path):
    chunks = _chunks(tmp_path, "v", [100] * 10, seed=0)
    assert watched_chunks(chunks, 1_000) == chunks
    picked = watched_chunks(chunks, 300)
    assert picked == chunks[::4] and sum(len(c.labels()) for c in picked) <= 300


def test_large_log_fit_watches_the_spread_chunks(tmp_path):
    train = _chunks(tmp_path, "t", [3_000] * 4, seed=1)
    valid = _chunks(tmp_path, "v", [500] * 6, seed=2)
    cfg = LGBMConfig(num_boost_round=40, early_stopping_rounds=40, num_leaves=7, min_data_in_leaf=20,
                     max_bagged_rows=3_000, max_valid_rows=1_000)
    model = LGBMModel(cfg)
    fit = model.fit_chunks(train, valid, FeatureSpec(categorical={}, numeric=["a", "b", "c"],
                                                     tabular=["a", "b", "c"]), seed=3, progress=False)
    watched = valid[::3]
    y = np.concatenate([c.labels() for c in watched])
    p = np.concatenate([model.booster.predict(c.features(), num_iteration=fit.best_iteration) for c in watched])
    # the AUC early stopping reported is the one on the watched chunks (not on all six)
    assert fit.valid_auc == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert fit.valid_auc > 0.7  # the signal in column 0 was learnt from a quarter of the rows per tree
