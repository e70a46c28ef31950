"""The minimum batch: rows and users added since the last training decide whether a run trains."""

from __future__ import annotations

import io
import json

import pytest

from dkt_core.ingest.layout import CHAMPION_KEY, LAST_TRAINED_KEY
from dkt_core.retrain.batch import check_batch as _check_batch
from dkt_core.retrain.batch import last_training, record_training
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.settings import S3Settings, load
from dkt_core.storage.workspace import Workspace

V1, V2 = "20250101-120000-0123abcd", "20250102-120000-89abcdef"


@pytest.fixture
def bucket(s3_env):
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client, s3_env.bucket


def _ingest(client, bucket, frame, name: str, run_id: str) -> dict:
    from dkt_core.data.validate import to_seed_csv
    from dkt_core.ingest import IngestConfig, ingest

    buf = io.StringIO()
    to_seed_csv(frame, buf)
    client.put_object(Bucket=bucket, Key=f"interactions/date=2020-01-01/{name}.csv", Body=buf.getvalue().encode())
    return ingest(IngestConfig(run_id=run_id, settings=load(S3Settings))).to_dict()


def check_batch(result, **kw):
    """The step as the DAG task calls it: settings and workspace loaded from this test's environment (the edge)."""
    from dkt_core.storage.s3 import s3_client

    s3, settings = load(S3Settings), load(RetrainSettings)
    return _check_batch(result, settings=settings, ws=Workspace(s3_client(s3), s3.bucket, settings.cache_dir), **kw)


def _parts(tiny_log):
    users = tiny_log["userID"].unique()
    big = tiny_log[tiny_log["userID"].isin(users[:40])]
    rest = tiny_log[tiny_log["userID"].isin(users[40:])]
    small = rest.groupby("userID").head(2).iloc[:8]  # 8 rows of 4 users
    return big, small, rest


def test_first_batch_trains_when_large_enough(bucket, tiny_log):
    client, name = bucket
    big, _, _ = _parts(tiny_log)
    res = _ingest(client, name, big, "big", "r1")
    got = check_batch(res)
    assert got["proceed"] and got["data_version"] == "v=000001" and got["parent_version"] is None
    assert (got["new_rows"], got["new_users"]) == (int((big["answerCode"] >= 0).sum()), 40)
    assert "in all data (never trained)" in got["reason"]
    # the same data under thresholds it does not reach: no training, and the reason says so
    low = check_batch(res, min_new_rows=len(big) + 1)
    assert not low["proceed"] and low["reason"].startswith("not retraining:")
    assert f"thresholds: {len(big) + 1} rows and 20 users" in low["reason"]


def test_small_batches_add_up_since_the_last_training(bucket, tiny_log):
    client, name = bucket
    big, small, rest = _parts(tiny_log)
    _ingest(client, name, big, "big", "r1")
    record_training(client, name, {"run_id": "r1", "model_version": V1, "data_version": "v=000001"})
    res = _ingest(client, name, small, "small", "r2")
    got = check_batch(res, min_new_rows=50, min_new_users=5)
    assert not got["proceed"] and (got["new_rows"], got["new_users"]) == (8, 4)
    assert got["parent_version"] == "v=000001" and got["base"]["source"] == LAST_TRAINED_KEY
    assert "8 new answered row(s) from 4 user(s) since the last training (on v=000001" in got["reason"]
    assert "kept in v=000002" in got["reason"]
    anyway = check_batch(res, min_new_rows=50, min_new_users=5, retrain_anyway=True)
    assert anyway["proceed"] and anyway["reason"].startswith("retrain_anyway: retraining on v=000002")
    # the next upload adds up with the small one: counted since v=000001, not since v=000002
    res3 = _ingest(client, name, rest, "rest", "r3")
    got3 = check_batch(res3, min_new_rows=50, min_new_users=5)
    assert got3["proceed"] and got3["parent_version"] == "v=000001"
    assert got3["new_users"] == rest["userID"].nunique() and got3["new_rows"] == int((rest["answerCode"] >= 0).sum())


def test_nothing_new_stops_unless_retrain_anyway(bucket, tiny_log):
    client, name = bucket
    big, _, _ = _parts(tiny_log)
    _ingest(client, name, big, "big", "r1")
    record_training(client, name, {"run_id": "r1", "model_version": V1, "data_version": "v=000001"})
    res = _ingest(client, name, big, "big", "r2")  # nothing new under the prefix
    assert res["status"] != "ingested" and res["data_version"] == "v=000001"
    got = check_batch(res)
    assert not got["proceed"] and (got["new_rows"], got["new_users"]) == (0, 0)
    assert "this run ingested nothing new" in got["reason"]
    anyway = check_batch(res, retrain_anyway=True)
    assert anyway["proceed"] and anyway["data_version"] == "v=000001"
    # no curated data at all: nothing to train on, whatever the params say
    empty = check_batch({"status": "skipped", "data_version": None}, retrain_anyway=True)
    assert not empty["proceed"] and "no curated data yet" in empty["reason"]


def test_last_training_is_the_newest_of_last_trained_and_champion(bucket):
    client, name = bucket
    assert last_training(client, name) is None
    client.put_object(Bucket=name, Key=CHAMPION_KEY, Body=json.dumps(
        {"model_version": V2, "artifact_uri": f"s3://{name}/models/{V2}/artifact.tar.gz",
         "data_version": "v=000003"}).encode())
    assert last_training(client, name)["source"] == "models/champion.json"  # buckets from before the record
    record_training(client, name, {"run_id": "r", "model_version": V1, "data_version": "v=000004"})
    assert last_training(client, name)["data_version"] == "v=000004"
    # the record only moves forward (a late retry of an older run cannot move it back)
    record_training(client, name, {"run_id": "old", "model_version": V2, "data_version": "v=000002"})
    assert last_training(client, name)["data_version"] == "v=000004"


def test_a_bad_record_is_a_clear_error(bucket):
    client, name = bucket
    client.put_object(Bucket=name, Key=LAST_TRAINED_KEY, Body=json.dumps(
        {"model_version": "../../x", "data_version": "v=000001"}).encode())
    with pytest.raises(ValueError, match="last_trained.json model_version '../../x' is not a model version"):
        last_training(client, name)


def test_negative_thresholds_are_refused(bucket):
    with pytest.raises(ValueError, match="min_new_rows"):
        check_batch({"status": "ingested", "data_version": "v=000001"}, min_new_rows=-1)
    with pytest.raises(ValueError, match="DKT_RETRAIN_MIN_NEW_USERS"):
        RetrainSettings(min_new_users=-1)
