"""Quality bar on real data (ASSISTments 2009, user-level 80/20 split). Skipped without ../shared/data."""

from __future__ import annotations

import json

import pytest

from dkt_core.data.split import split_users
from dkt_core.data.validate import load_interactions, to_seed_csv
from dkt_core.predict.evaluate import evaluate_artifact
from dkt_core.training.config import TrainConfig
from dkt_core.training.trainer import train

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_lgbm_on_assist2009(shared_data, tmp_path):
    frame = load_interactions(shared_data / "assist2009_dev.csv.gz")
    train_df, test_df = split_users(frame, 0.2, salt="assist-test")
    to_seed_csv(train_df, tmp_path / "train.csv")  # stays in tmp: the data must never enter the repo
    to_seed_csv(test_df, tmp_path / "test.csv")
    art = train(tmp_path / "train.csv", tmp_path / "art", TrainConfig(models=["lgbm"]), progress=False)
    report = evaluate_artifact(art, tmp_path / "test.csv", n_boot=50)
    print(json.dumps({k: report[k] for k in ("auc_all", "auc_last", "acc_last", "n_users")}))
    assert report["auc_all"] >= 0.78
    assert report["auc_last"] >= 0.82
