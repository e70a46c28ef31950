"""The Airflow connection as the only S3 configuration: no DKT_S3_*/AWS_* variable anywhere, the
connection (AIRFLOW_CONN_AWS_DEFAULT, JSON) names the moto endpoint, the bucket and the credentials, and
dkt_retrain's ingest task reads and writes that bucket. Its secret key never reaches a task log, an XCom, Airflow's
files (logs, configuration) or its metadata database (tests/secretscan.py)."""

from __future__ import annotations

import json
import logging
import secrets

import boto3
import pytest
from dagutil import keys, upload

pytestmark = pytest.mark.airflow

AFTER_INGEST = r"(?!plan$|ingest$|has_new_data$).*"
S3_VARIABLES = ("DKT_S3_ENDPOINT_URL", "DKT_S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_S3")


def test_the_connection_alone_configures_s3(airflow_db, dagbag, moto_server, logs, tmp_path, monkeypatch,
                                           caplog, capfd):
    initial, _ = logs
    caplog.set_level(logging.INFO, logger="dkt_airflow")  # the bridge says which source decided, at INFO
    moto_server.reset()
    for name in S3_VARIABLES:
        # setenv first, so that what the task sets in this process (the bridge exports the connection's
        # settings) is undone after the test even for variables that were absent before
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    # nor a credentials file or instance metadata: the connection's key pair is the only one there is
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("DKT_HOME", str(tmp_path / "dkt"))
    bucket, access_key, secret = "dkt-from-connection", "conn-only-key", "conn-secret-" + secrets.token_hex(16)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "login": access_key, "password": secret,
         "extra": {"region_name": "eu-west-1", "endpoint_url": moto_server.endpoint_url, "bucket": bucket}}))

    # The test's own client, with explicit arguments (nothing of it reaches the DAG's tasks).
    client = boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1",
                          aws_access_key_id=access_key, aws_secret_access_key=secret)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    upload(client, bucket, "interactions/date=2025-01-01/a.csv", initial.head(40))

    run = dagbag.dags["dkt_retrain"].test(run_conf={"models": ["lgbm"]}, mark_success_pattern=AFTER_INGEST)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {t: str(tis[t].state) for t in ("plan", "ingest", "has_new_data")} == {
        "plan": "success", "ingest": "success", "has_new_data": "success"}
    result = tis["ingest"].xcom_pull(task_ids="ingest")
    assert result["status"] == "ingested" and result["bucket"] == bucket and result["rows_added"] == 40
    assert "curated/v=000001/interactions.parquet" in keys(client, bucket, "curated/")
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == [bucket]  # no default bucket created

    # The secret is in no XCom and in no task log line. dag.test() runs the tasks in this process: their log
    # is what it printed and logged (the session's Airflow log level is WARNING, the bridge's INFO is kept).
    for ti in tis.values():
        assert secret not in json.dumps(ti.xcom_pull(task_ids=ti.task_id), default=str), ti.task_id
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert "S3 settings from connection 'aws_default'" in text and f"'DKT_S3_BUCKET': '{bucket}'" in text
    assert secret not in text
    # ... nor in any XCom row, Airflow's files (task and component logs, airflow.cfg) or its database
    from tests.secretscan import files_under, leaks, xcom_places
    from tests.secretscan import secret as named

    places = {"task output and log records": text, **xcom_places([run]), **files_under(airflow_db)}
    assert not leaks([named("S3 secret key (Airflow connection password)", secret)], places)
