"""Clean-up of the training scratch ``runs/<run>/train/`` (dkt_core.retrain.scratch) on a real moto server:
released once the run committed (challenger record + artifact stay), kept for a run that did not (its retry
reuses it), stale leftovers of other runs removed by the age rule only, and a second clean-up changes nothing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from dkt_core.ingest.layout import challenger_record_key, model_key, train_prefix
from dkt_core.retrain.scratch import clean_training_scratch, release_run_scratch, sweep_stale_scratch
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.retrain.training import (
    assemble_challenger,
    prepare_training,
    train_challenger,
    train_run_member,
)
from dkt_core.storage.objects import list_keys, list_objects, write_parquet
from dkt_core.storage.workspace import Workspace

OPTIONS = {"lgbm": {"num_boost_round": 10, "num_leaves": 7, "min_data_in_leaf": 20, "num_threads": 1}}


@pytest.fixture
def ws(s3_env, tmp_path):
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return Workspace(client, s3_env.bucket, tmp_path / "cache")


@pytest.fixture
def train_uri(ws, tiny_log):
    return write_parquet(ws.client, ws.bucket, "splits/v=000001/train.parquet", tiny_log)


def _everything(ws) -> set[str]:
    return set(list_keys(ws.client, ws.bucket, ""))


def test_a_committed_run_releases_its_scratch_and_keeps_record_and_model(ws, train_uri):
    trained = train_challenger("run-ok", "v=000001", train_uri, ["lgbm"], model_options=OPTIONS, ws=ws)
    prefix = train_prefix("run-ok")
    scratch = set(list_keys(ws.client, ws.bucket, prefix))
    assert {prefix + k for k in ("prepared.json", "prepared.tar.gz", "members/lgbm.json",
                                 "members/lgbm.tar.gz")} == scratch
    before = _everything(ws)

    out = clean_training_scratch("run-ok", settings=RetrainSettings(), ws=ws)
    assert out["released"]["released"] and out["released"]["objects"] == 4 and out["released"]["bytes"] > 0
    assert list_keys(ws.client, ws.bucket, prefix) == []
    after = _everything(ws)
    assert after == before - scratch  # nothing else touched
    assert {challenger_record_key("run-ok"), model_key(trained["model_version"], "artifact.tar.gz")} <= after

    again = clean_training_scratch("run-ok", settings=RetrainSettings(), ws=ws)  # a retry: a no-op
    assert again["released"]["released"] and again["released"]["objects"] == 0
    assert again["swept"]["runs_swept"] == 0 and _everything(ws) == after
    # and a retry of the training steps reuses the challenger record without the scratch
    assert assemble_challenger("run-ok", ["lgbm"], ws=ws)["reused"]
    assert _everything(ws) == after


def test_a_run_that_did_not_commit_keeps_its_scratch_for_its_retry(ws, train_uri):
    prepare_training("run-failed", "v=000001", train_uri, ["lgbm"], model_options=OPTIONS, ws=ws)
    prefix = train_prefix("run-failed")
    kept = set(list_keys(ws.client, ws.bucket, prefix))
    assert kept == {prefix + "prepared.json", prefix + "prepared.tar.gz"}

    out = clean_training_scratch("run-failed", settings=RetrainSettings(), ws=ws)
    assert not out["released"]["released"] and "has not committed" in out["released"]["kept_because"]
    assert set(list_keys(ws.client, ws.bucket, prefix)) == kept
    # the age rule never takes the calling run's own scratch, however old it looks
    far = clean_training_scratch("run-failed", settings=RetrainSettings(), ws=ws,
                                 now=_newest(ws, prefix) + timedelta(days=365))
    assert far["swept"]["runs_swept"] == 0 and set(list_keys(ws.client, ws.bucket, prefix)) == kept

    # the retry goes on from the kept prepared set, then commits and releases it
    assert not train_run_member("run-failed", "lgbm", ws=ws)["reused"]
    trained = assemble_challenger("run-failed", ["lgbm"], ws=ws)
    assert release_run_scratch("run-failed", ws=ws)["released"]
    assert list_keys(ws.client, ws.bucket, prefix) == []
    assert ws.client.head_object(Bucket=ws.bucket, Key=model_key(trained["model_version"], "artifact.tar.gz"))


def test_a_record_naming_a_missing_artifact_keeps_the_scratch(ws, train_uri):
    trained = train_challenger("run-x", "v=000001", train_uri, ["lgbm"], model_options=OPTIONS, ws=ws)
    ws.client.delete_object(Bucket=ws.bucket, Key=model_key(trained["model_version"], "artifact.tar.gz"))
    out = release_run_scratch("run-x", ws=ws)
    assert not out["released"] and "does not exist" in out["kept_because"]
    assert len(list_keys(ws.client, ws.bucket, train_prefix("run-x"))) == 4


def _put_scratch(ws, run_id: str, n: int = 3) -> set[str]:
    prefix = train_prefix(run_id)
    keys = {prefix + "prepared.tar.gz", prefix + "prepared.json"} | {prefix + f"members/m{i}.json" for i in range(n)}
    for key in sorted(keys):
        ws.client.put_object(Bucket=ws.bucket, Key=key, Body=b"x" * 10)
    return keys


def _newest(ws, prefix: str):
    return max(o["modified"] for o in list_objects(ws.client, ws.bucket, prefix))


def _after(ws, moment) -> None:
    """Wait until the store's clock passed ``moment`` (LastModified has a coarse resolution), so that the
    next objects are strictly younger; a wait, not a timing assertion."""
    probe = "probe/clock"
    for _ in range(400):
        ws.client.put_object(Bucket=ws.bucket, Key=probe, Body=b"")
        if ws.client.head_object(Bucket=ws.bucket, Key=probe)["LastModified"] > moment:
            ws.client.delete_object(Bucket=ws.bucket, Key=probe)
            return
        time.sleep(0.05)
    raise AssertionError("the S3 clock did not move on")


def test_the_age_rule_removes_only_old_prefixes_of_other_runs(ws):
    old = _put_scratch(ws, "manual__2026-01-02T03:04:05+00:00")  # a real Airflow run id (slug with a hash)
    old_newest = _newest(ws, train_prefix("manual__2026-01-02T03:04:05+00:00"))
    _after(ws, old_newest)
    young = _put_scratch(ws, "run-young")
    mine = _put_scratch(ws, "run-mine")
    young_oldest = min(o["modified"] for o in list_objects(ws.client, ws.bucket, train_prefix("run-young")))
    ws.client.put_object(Bucket=ws.bucket, Key=challenger_record_key("run-young"), Body=b"{}")
    ws.client.put_object(Bucket=ws.bucket, Key="runs/bad name/train/x", Body=b"x")  # no slug of ours
    others = _everything(ws) - old
    # "now" such that the old run's newest object is just over 7 days old and the young run's is not
    now = old_newest + timedelta(days=7) + (young_oldest - old_newest) / 2

    out = sweep_stale_scratch(7, keep_run_id="run-mine", now=now, ws=ws)
    assert out["runs_swept"] == 1 and out["objects"] == len(old) and out["bytes"] == 10 * len(old)
    assert out["skipped_names"] == 1
    assert _everything(ws) == others  # young, own, the record and the odd name stay
    assert young <= others and mine <= others and "runs/bad name/train/x" in others

    assert sweep_stale_scratch(7, keep_run_id="run-mine", now=now, ws=ws)["runs_swept"] == 0  # a no-op again
    assert sweep_stale_scratch(0, now=now + timedelta(days=999), ws=ws)["runs_swept"] == 0  # 0 days: never
    assert _everything(ws) == others
    # later, the young run's scratch is stale too (the caller's own run still kept)
    late = sweep_stale_scratch(7, keep_run_id="run-mine", now=now + timedelta(days=30), ws=ws)
    assert late["runs_swept"] == 1 and late["swept"] == ["run-young"]
    assert _everything(ws) == others - young


def test_keys_come_from_the_layout_only():
    from dkt_core.ingest import layout

    assert layout.train_prefix("run_1") == "runs/run_1/train/"
    assert layout.train_key("run_1", "members/lgbm.json") == "runs/run_1/train/members/lgbm.json"
    assert layout.train_prefix(slug="run_1") == "runs/run_1/train/"
    assert layout.slug_of_run_prefix("runs/run_1/") == "run_1"
    slug = layout.run_slug("manual__2026-01-02T03:04:05+00:00")
    assert layout.slug_of_run_prefix(f"runs/{slug}/") == slug
    for bad in ("runs/../", "runs/a/b/", "runs/bad name/", "runs//", "models/x/", "runs/./", "runs/a"):
        with pytest.raises(ValueError):
            layout.slug_of_run_prefix(bad)
    for bad in ("../x", "a/../b", "", ".hidden"):
        with pytest.raises(ValueError):
            layout.train_key("run_1", bad)
    with pytest.raises(ValueError):
        layout.train_prefix()
