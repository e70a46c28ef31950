"""dag.test() runs of the whole dkt_retrain DAG against a real moto S3 server, deploy disabled.

Tiny LightGBM configs (via the model_options param) keep each run to a few seconds.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from dagutil import PROMOTE_PATH, STUMP, TINY, curated_rows, get_json, keys, states, upload, xcom

pytestmark = pytest.mark.airflow


def test_first_run_promotes_rerun_skips_worse_challenger_is_rejected(dagbag, env, s3_env, logs):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, later = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)

    # (1) first run: trains, no champion yet -> promoted (package + alias; deploy disabled)
    first = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    st = states(first)
    assert str(first.state) == "success", st
    assert all(st[t] == "success" for t in ["split_holdout", "live_eval", "prepare", "train_member", "ensemble",
                                              "evaluate", "report", "gate", *PROMOTE_PATH]), st
    assert st["keep_champion"] == "skipped"
    trained = xcom(first, "ensemble")
    champion = get_json(client, bucket, "models/champion.json")
    assert champion["model_version"] == trained["model_version"]
    assert champion["artifact_uri"] == f"s3://{bucket}/models/{trained['model_version']}/artifact.tar.gz"
    assert champion["deployment"] == "skipped" and champion["image"] is None
    assert champion["holdout"]["auc_all"] > 0.6
    assert champion["bentoml_tag"] == f"dkt-model:{trained['model_version']}"
    assert xcom(first, "live_eval")["status"] == "skipped"  # nothing served before the first model
    model_keys = keys(client, bucket, f"models/{trained['model_version']}/")
    for name in ("artifact.tar.gz", "report.html", "report.json", "roc.png", "calibration.png", "evaluation.json"):
        assert f"models/{trained['model_version']}/{name}" in model_keys
    assert xcom(first, "report")["report_uri"] == champion["report_uri"]
    split = xcom(first, "split_holdout")
    assert split["holdout_users"] > 0 and split["train_users"] > split["holdout_users"]

    # (2) no new data: the run succeeds and everything after has_new_data is skipped
    second = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    st = states(second)
    assert str(second.state) == "success", st
    assert all(st[t] == "skipped" for t in ["split_holdout", "live_eval", "prepare", "ensemble", "gate",
                                              *PROMOTE_PATH]), st

    # (3) new data + a deliberately worse challenger (one boosting round on a 2-leaf tree)
    upload(client, bucket, "interactions/date=2020-02-01/later.csv", later)
    before = client.head_object(Bucket=bucket, Key="models/champion.json")["ETag"]
    third = dag.test(run_conf={"models": ["lgbm"], "model_options": STUMP})
    st = states(third)
    assert str(third.state) == "success", st
    assert st["ensemble"] == "success" and st["keep_champion"] == "success", st
    assert all(st[t] == "skipped" for t in PROMOTE_PATH), st
    decision = xcom(third, "gate", key="decision")
    assert decision["promote"] is False and "champion kept" in decision["reason"]
    assert decision["challenger"] < decision["champion"] - decision["tolerance"]
    assert client.head_object(Bucket=bucket, Key="models/champion.json")["ETag"] == before
    # live evaluation scored the champion on exactly the new rows of v=000002, recorded once
    live = get_json(client, bucket, "reports/live_auc.json")["entries"]
    assert [e["data_version"] for e in live] == ["v=000002"]
    assert live[0]["model_version"] == champion["model_version"]
    assert live[0]["n_new_rows"] == len(later) and live[0]["auc"] > 0.6
    challenger = xcom(third, "ensemble")["model_version"]
    report = get_json(client, bucket, f"models/{challenger}/report.json")
    assert report["evaluation"]["champion_version"] == champion["model_version"]
    assert report["drift"]["new_rows"]["rows"] == len(later) and set(report["drift"]["psi"]) == {
        "assessmentItemID", "testId", "KnowledgeTag"}
    assert report["live_trend"][0]["data_version"] == "v=000002"


def test_malformed_rows_are_quarantined_and_the_run_succeeds(dagbag, env, s3_env, logs):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, _ = logs
    bad = ("u_bad,A010001001,A010000001,7,2020-01-02 00:00:00,5\n"  # answerCode 7
           ",A010001001,A010000001,1,2020-01-02 00:00:00,5\n"  # no user
           "u_bad2,A010001001,A010000001,1,not-a-time,5\n")
    upload(client, bucket, "interactions/date=2020-01-01/mixed.csv", initial, extra=bad)
    run = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(run.state) == "success", states(run)
    ingested = xcom(run, "ingest")
    assert ingested["rows_rejected"] == 3 and ingested["rows_added"] == len(initial)
    rejected_key = "quarantine/" + ingested["quarantine_prefix"].split("/", 1)[1] + \
        "interactions/date=2020-01-01/mixed.csv.rejected.csv"
    rejected = pd.read_csv(io.BytesIO(client.get_object(Bucket=bucket, Key=rejected_key)["Body"].read()))
    assert len(rejected) == 3 and rejected["reason"].notna().all()
    assert len(curated_rows(client, bucket, "v=000001")) == len(initial)
    assert get_json(client, bucket, "models/champion.json")["model_version"] == xcom(run, "ensemble")["model_version"]
    quality = get_json(client, bucket, f"models/{xcom(run, 'ensemble')['model_version']}/report.json")["quality"]
    assert quality["rows_rejected"] == 3 and quality["rows_valid"] == len(initial)


def test_s3_outage_on_first_try_is_retried_without_duplicates(dagbag, env, s3_env, s3_proxy, logs, monkeypatch,
                                                              tmp_path):
    """The S3 endpoint goes away at the worst moment of ingest's first try: everything written, not
    committed. The retry must commit exactly one version with each row once."""
    import dkt_core.ingest.pipeline as pipeline

    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, _ = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)
    monkeypatch.setenv("DKT_S3_ENDPOINT_URL", s3_proxy.endpoint_url)  # tasks talk to S3 through the proxy
    real_commit, attempts = pipeline.commit_run, tmp_path / "commit-attempts"

    def commit_during_outage(*args, **kwargs):
        # Runs in the task's (forked) process: count attempts in a file, cut S3 on the first one.
        with attempts.open("a") as f:
            f.write("x")
        if attempts.read_text() != "x":
            return real_commit(*args, **kwargs)
        s3_proxy.cut()  # a real outage: connections dropped, moto keeps its state
        try:
            return real_commit(*args, **kwargs)
        finally:
            s3_proxy.restore()

    monkeypatch.setattr(pipeline, "commit_run", commit_during_outage)
    run = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(run.state) == "success", states(run)
    ingest_ti = next(ti for ti in run.get_task_instances() if ti.task_id == "ingest")
    assert ingest_ti.try_number == 2 and attempts.read_text() == "xx"
    # Versions are claimed and created conditionally, never overwritten (issue 11, item 4): the dead first
    # attempt claimed and wrote v=000001 but never committed it; the retry of the same run finds
    # byte-identical content under its own run's claim and adopts it (no v=000002).
    committed = xcom(run, "ingest")["data_version"]
    assert committed == "v=000001" and xcom(run, "ingest")["parent_version"] is None
    assert keys(client, bucket, "curated/v=000002/") == []
    assert client.get_object(Bucket=bucket, Key="curated/LATEST")["Body"].read().decode().strip() == committed
    rows = curated_rows(client, bucket, committed)
    assert len(rows) == len(initial) and not rows.duplicated().any()
    assert len(keys(client, bucket, "manifest/runs/")) == 1
    assert get_json(client, bucket, "models/champion.json")["data_version"] == committed


def _note(run) -> str | None:
    """The run's note as stored (the listener in plugins/dkt_airflow/run_notes.py writes it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(DagRun).where(DagRun.dag_id == run.dag_id, DagRun.run_id == run.run_id)).note


def test_small_batch_stops_early_with_the_reason_in_the_note_and_retrain_anyway_trains(dagbag, env, s3_env, logs):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, later = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)
    first = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(first.state) == "success", states(first)
    note = _note(first)  # the gate's decision, its numbers and reason are the note
    assert note.startswith("[dkt] PROMOTE: challenger AUC "), note
    assert note.endswith("no champion yet: the first model is promoted"), note
    champion = get_json(client, bucket, "models/champion.json")
    assert get_json(client, bucket, "models/last_trained.json")["data_version"] == "v=000001"
    assert len(champion["artifact_sha256"]) == 64  # recorded at upload, checked at every load

    # Nine answers from three students: ingested (v=000002), but nothing trains or deploys.
    small = later[later["userID"].isin(later["userID"].unique()[:3])].groupby("userID").head(3)
    assert (len(small), small["userID"].nunique()) == (9, 3)
    upload(client, bucket, "interactions/date=2020-02-01/small.csv", small)
    stopped = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    st = states(stopped)
    assert str(stopped.state) == "success", st
    assert xcom(stopped, "ingest")["status"] == "ingested" and st["has_new_data"] == "success"
    assert all(st[t] == "skipped" for t in ["split_holdout", "live_eval", "prepare", "ensemble", "gate",
                                              *PROMOTE_PATH]), st
    note = _note(stopped)
    assert note.startswith("[dkt] not retraining: 9 new answered row(s) from 3 user(s) since the last training "
                           "(on v=000001"), note
    assert "thresholds: 500 rows and 20 users" in note and "retrain_anyway" in note
    assert len(curated_rows(client, bucket, "v=000002")) == len(initial) + 9  # the rows are kept
    assert get_json(client, bucket, "models/champion.json")["model_version"] == champion["model_version"]

    # retrain_anyway, with nothing new this run: trains on the latest version; the nine rows are judged
    # "too few" by live evaluation and drift.
    forced = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY, "retrain_anyway": True})
    st = states(forced)
    assert str(forced.state) == "success", st
    assert xcom(forced, "ingest")["status"] != "ingested"
    assert st["ensemble"] == "success" and st["gate"] == "success", st
    trained = xcom(forced, "ensemble")
    assert trained["data_version"] == "v=000002"
    live = xcom(forced, "live_eval")
    assert (live["n_scored"], live["n_users"], live["judged"]) == (9, 3, False)
    assert live["judgement"].startswith("too few to judge") and len(live["auc_ci95"]) == 2
    report = get_json(client, bucket, f"models/{trained['model_version']}/report.json")
    assert report["drift"]["verdict"] == "too few to judge" and report["drift"]["n_rows"] == 9
    decision = xcom(forced, "gate", key="decision")
    assert decision["n_users"] > 0 and len(decision["difference_ci95"]) == 2
    assert "paired bootstrap" in decision["reason"] and decision["reason"] in _note(forced)
