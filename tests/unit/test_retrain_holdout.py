"""Fixed hold-out users: stable across data versions, disjoint from training, written once per version."""

from __future__ import annotations

import pandas as pd
import pytest

from dkt_core.retrain.holdout import prepare_split, split_frame
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.workspace import Workspace


def test_split_is_by_user_and_stable_when_data_grows(tiny_log):
    users = tiny_log["userID"].unique()
    early = tiny_log[tiny_log["userID"].isin(users[:40])]
    train_a, hold_a = split_frame(early, 0.3, "holdout")
    train_b, hold_b = split_frame(tiny_log, 0.3, "holdout")  # a later version: more users, more rows
    assert not set(train_b["userID"]) & set(hold_b["userID"])
    assert len(train_b) + len(hold_b) == len(tiny_log)
    # every user keeps its side: the old hold-out users are still hold-out, none of them ever trains
    assert set(hold_a["userID"]) <= set(hold_b["userID"])
    assert set(train_a["userID"]) <= set(train_b["userID"])
    assert 0.1 < hold_b["userID"].nunique() / len(users) < 0.5
    # another salt gives another hold-out
    assert set(split_frame(tiny_log, 0.3, "other")[1]["userID"]) != set(hold_b["userID"])


def test_one_sided_split_is_refused_with_advice():
    frame = pd.DataFrame({"userID": ["only"] * 3})
    with pytest.raises(ValueError, match="DKT_HOLDOUT_FRACTION"):
        split_frame(frame, 0.2, "holdout")


def test_prepare_split_writes_once_per_version(s3_env, tiny_log, tmp_path):
    from dkt_core.ingest.curated import write_version
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    write_version(client, s3_env.bucket, 1, tiny_log, parent=None, run_id="r1", sources=[])
    settings = RetrainSettings(holdout_fraction=0.25, cache_dir=tmp_path)
    ws = Workspace(client, s3_env.bucket, settings.cache_dir)
    first = prepare_split("v=000001", settings=settings, ws=ws)
    assert first["train_rows"] + first["holdout_rows"] == len(tiny_log)
    assert first["holdout_uri"] == f"s3://{s3_env.bucket}/splits/v=000001/holdout.parquet"
    etag = client.head_object(Bucket=s3_env.bucket, Key="splits/v=000001/train.parquet")["ETag"]
    again = prepare_split("v=000001", settings=settings, ws=ws)
    assert again == first
    assert client.head_object(Bucket=s3_env.bucket, Key="splits/v=000001/train.parquet")["ETag"] == etag
