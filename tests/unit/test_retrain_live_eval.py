"""Live evaluation: only the new rows are scored, each with the user's earlier history as context."""

from __future__ import annotations

import numpy as np
import pytest

from dkt_core.evaluation.metrics import evaluate_predictions
from dkt_core.retrain.live_eval import live_history, new_rows_mask, record_live_auc, score_new_rows


@pytest.fixture(scope="module")
def predictor(tiny_log, tmp_path_factory):
    from dkt_core.predict import Predictor
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train

    data = tmp_path_factory.mktemp("live") / "train.parquet"
    tiny_log.to_parquet(data, index=False)
    opts = {"lgbm": {"num_boost_round": 20, "num_leaves": 7, "min_data_in_leaf": 20, "num_threads": 1}}
    return Predictor.load(train(data, data.parent / "artifact", TrainConfig(model_options=opts), progress=False))


def _split_in_time(frame, q=0.8):
    cut = frame["Timestamp"].quantile(q)
    return frame[frame["Timestamp"] < cut].reset_index(drop=True)


def test_new_rows_are_exactly_the_rows_the_parent_lacks(tiny_log):
    parent = _split_in_time(tiny_log)
    mask = new_rows_mask(tiny_log, parent)
    assert mask.sum() == len(tiny_log) - len(parent)
    assert (tiny_log.loc[mask, "Timestamp"] >= tiny_log["Timestamp"].quantile(0.8)).all()
    assert new_rows_mask(tiny_log, None).all()


def test_new_rows_are_scored_with_their_history(predictor, tiny_log):
    parent = _split_in_time(tiny_log)
    mask = new_rows_mask(tiny_log, parent)
    got = score_new_rows(predictor, tiny_log, mask)
    full = predictor.predict_frame(tiny_log)  # every row from its own past
    want = evaluate_predictions(tiny_log.loc[mask, "userID"].to_numpy(), tiny_log.loc[mask, "answerCode"].to_numpy(),
                                full[mask], n_boot=0)
    assert got["n_rows"] == int(mask.sum()) and got["auc_all"] == pytest.approx(want["auc_all"])
    # without the earlier history the same rows get other predictions: the context matters
    alone = predictor.predict_frame(tiny_log[mask].reset_index(drop=True))
    assert not np.allclose(alone, full[mask])


def test_live_auc_record_is_one_entry_per_data_version(s3_env):
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    record_live_auc(client, s3_env.bucket, {"data_version": "v=000002", "auc": 0.7})
    record_live_auc(client, s3_env.bucket, {"data_version": "v=000003", "auc": 0.72})
    record_live_auc(client, s3_env.bucket, {"data_version": "v=000002", "auc": 0.71})  # a retry
    assert live_history(client, s3_env.bucket) == [{"data_version": "v=000002", "auc": 0.71},
                                                   {"data_version": "v=000003", "auc": 0.72}]


def test_live_metrics_carry_counts_and_an_interval(predictor, tiny_log):
    parent = _split_in_time(tiny_log)
    mask = new_rows_mask(tiny_log, parent)
    got = score_new_rows(predictor, tiny_log, mask, n_boot=100)
    lo, hi = got["auc_all_ci95"]
    assert lo <= got["auc_all"] <= hi and got["n_users"] == tiny_log.loc[mask, "userID"].nunique()


def test_too_few_rows_or_users_are_not_judged():
    from dkt_core.retrain.settings import RetrainSettings

    s = RetrainSettings(judge_min_rows=200, judge_min_users=20)
    assert s.too_few(9, 3) == ("too few to judge: 9 rows from 3 users (needs 200 rows and 20 users: "
                               "DKT_JUDGE_MIN_ROWS / DKT_JUDGE_MIN_USERS)")
    assert s.too_few(5000, 19).startswith("too few to judge") and s.too_few(199, 500).startswith("too few")
    assert s.too_few(200, 20) is None
