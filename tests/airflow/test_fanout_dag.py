"""Training fans out (issue 15 item 2): one mapped ``train_member`` task per model, then ``ensemble``.

A member whose task keeps failing (here: an LSTM with an impossible hidden size) is retried once, then
left out: ``ensemble`` assembles the members that finished and the rest of the DAG runs on that artifact.
"""

from __future__ import annotations

import pytest
from dagutil import PROMOTE_PATH, TINY, get_json, keys, states, upload, xcom

from dkt_core.ingest.layout import challenger_record_key, train_prefix

pytestmark = pytest.mark.airflow


def _members(run) -> dict[str, object]:
    """model -> its train_member task instance (mapped: one per model)."""
    tis = [ti for ti in run.get_task_instances() if ti.task_id == "train_member"]
    return {ti.xcom_pull(task_ids="prepare")[ti.map_index]["model"]: ti for ti in tis}


def test_a_member_that_keeps_failing_is_retried_then_left_out(dagbag, env, s3_env, logs):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, _ = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)
    options = {**TINY, "lstm": {"hidden": -1, "max_epochs": 1, "num_threads": 1}}
    run = dag.test(run_conf={"models": ["lgbm", "lstm"], "model_options": options})
    st = states(run)
    assert str(run.state) == "success", st
    members = _members(run)
    assert sorted(members) == ["lgbm", "lstm"] and sorted(ti.map_index for ti in members.values()) == [0, 1]
    assert str(members["lgbm"].state) == "success"
    assert str(members["lstm"].state) == "failed" and members["lstm"].try_number == 2  # retried once
    # the grid's label: the model, and for a finished member its validation AUC (with n) and time
    assert members["lstm"].rendered_map_index == "lstm"
    assert members["lgbm"].rendered_map_index.startswith("lgbm: AUC 0.")
    assert "(n=" in members["lgbm"].rendered_map_index
    scored = members["lgbm"].xcom_pull(task_ids="train_member", map_indexes=members["lgbm"].map_index)
    assert scored["model"] == "lgbm" and scored["valid_auc"] > 0.6 and scored["n_valid_rows"] > 0
    assert set(scored) <= {"run_id", "model", "uri", "sha256", "valid_auc", "n_valid_rows", "n_valid_users",
                           "train_seconds", "reused"}  # XCom: ids, URIs, small metrics

    trained = xcom(run, "ensemble")
    assert trained["models"] == ["lgbm"] and trained["members_failed"] == ["lstm"]
    assert trained["ensemble_weights"] == {"lgbm": 1.0}
    assert set(trained["member_scores"]) == {"lgbm"}
    assert all(st[t] == "success" for t in ["evaluate", "report", "gate", *PROMOTE_PATH]), st
    assert get_json(client, bucket, "models/champion.json")["model_version"] == trained["model_version"]
    # what the steps wrote under the run (the prepared set once, the finished member only) was released by
    # clean_scratch once the run committed; the challenger record and the artifact stay
    cleaned = xcom(run, "clean_scratch")
    assert st["clean_scratch"] == "success" and cleaned["released"]["released"], cleaned
    assert cleaned["released"]["objects"] == 4  # prepared.tar.gz + .json, members/lgbm.tar.gz + .json
    prefix = train_prefix(trained["run_id"])
    assert keys(client, bucket, prefix) == []
    assert keys(client, bucket, challenger_record_key(trained["run_id"])) == [challenger_record_key(trained["run_id"])]
    assert keys(client, bucket, f"models/{trained['model_version']}/artifact.tar.gz")


def test_no_member_finishing_fails_the_run_with_nothing_promoted(dagbag, env, s3_env, logs):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, _ = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)
    run = dag.test(run_conf={"models": ["lstm"], "model_options": {"lstm": {"hidden": -1, "num_threads": 1}}})
    st = states(run)
    assert str(run.state) == "failed", st
    assert st["train_member"] == "failed" and st["ensemble"] == "failed", st
    ensemble_ti = next(ti for ti in run.get_task_instances() if ti.task_id == "ensemble")
    assert ensemble_ti.try_number == 1  # not retried: no member finished, a retry could not change that
    assert all(st[t] in ("upstream_failed", "skipped") for t in ["evaluate", "gate", *PROMOTE_PATH]), st
    assert keys(client, bucket, "models/champion.json") == []
    # clean_scratch ran (all_done) and kept the run's prepared set: the run did not commit, a retry reuses it
    cleaned = xcom(run, "clean_scratch")
    assert st["clean_scratch"] == "success" and not cleaned["released"]["released"], cleaned
    prefix = train_prefix(run.run_id)
    assert set(keys(client, bucket, prefix)) == {prefix + "prepared.tar.gz", prefix + "prepared.json"}
