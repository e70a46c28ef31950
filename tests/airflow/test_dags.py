"""DAG integrity and policy checks, and dag.test() runs of the ingestion against a real moto S3."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = {"pandas", "numpy", "torch", "lightgbm", "sklearn", "bentoml", "boto3", "docker", "dkt_core", "pyarrow"}
AFTER_INGEST = r"(?!plan$|ingest$|has_new_data$).*"
HEADER = "userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag\n"


def test_every_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"dkt_retrain", "dkt_ingest_sensor"} <= set(dagbag.dag_ids)


def test_dag_policies(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.max_active_runs == 1, dag_id
        assert dag.catchup is False, dag_id
        assert dag.tags and "dkt" in dag.tags, dag_id
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            assert t.on_failure_callback, f"{dag_id}.{t.task_id} has no failure callback"
    retrain = dagbag.dags["dkt_retrain"]
    ingest = retrain.get_task("ingest")
    assert ingest.retries >= 2 and ingest.retry_exponential_backoff and ingest.max_retry_delay
    # the task ends before its ingest lease could lapse (a lapsed lease lets another run claim the version)
    from dkt_core.settings import IngestSettings, load

    assert ingest.execution_timeout is not None
    assert ingest.execution_timeout.total_seconds() < load(IngestSettings).lease_ttl_s
    assert ingest.doc_md
    assert set(retrain.params.keys()) >= {"models", "model_options", "force_deploy", "skip_deploy", "s3_prefix",
                                          "training_window_days", "gate_tolerance"}
    for task_id in ("split_holdout", "live_eval", "evaluate", "report", "package", "set_champion"):
        t = retrain.get_task(task_id)  # S3-bound: retried with exponential backoff
        assert t.retries >= 2 and t.retry_exponential_backoff and t.max_retry_delay, task_id
    deploy = retrain.get_task("deploy")  # registry/Docker-bound
    assert deploy.retries >= 1 and deploy.retry_exponential_backoff
    for t in retrain.tasks:
        assert t.doc_md, f"dkt_retrain.{t.task_id} has no task doc"
    # live evaluation happens before any training on the new rows; promotion only behind the gate
    assert "live_eval" in retrain.get_task("prepare").upstream_task_ids
    assert retrain.get_task("gate").downstream_task_ids == {"package", "keep_champion"}
    assert retrain.get_task("set_champion").upstream_task_ids >= {"deploy"}
    sensor = dagbag.dags["dkt_ingest_sensor"].get_task("wait_for_new_objects")
    assert sensor.mode == "reschedule" and sensor.soft_fail and sensor.retries >= 2


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_no_heavy_top_level_imports(path):
    """The DAG processor parses these files every few seconds: heavy imports belong inside tasks."""
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in HEAVY, f"{path.name}: top-level import of {name}"


def test_parsing_the_dags_warns_nothing():
    """Each task process parses its DAG file first: a deprecation warning there lands in every task log
    (the sensor's once per poke). A fresh interpreter, so modules imported by other tests do not hide it."""
    code = (
        "import json, runpy, sys, warnings\n"
        "import airflow.sdk  # first: initialising Airflow resets the warning filters and hooks\n"
        "out = []\n"
        "for path in sys.argv[1:]:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        runpy.run_path(path)\n"
        "    out += [[path, w.category.__name__, f'{w.filename}:{w.lineno}', str(w.message)] for w in caught\n"
        "            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DAGS.parent / "plugins"), str(DAGS.parent)])}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, sorted(DAGS.glob("*.py")))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _upload(settings, key, text):
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(settings)
    ensure_bucket(client, settings.bucket)
    client.put_object(Bucket=settings.bucket, Key=key, Body=text.encode())
    return client


def _states(dagrun) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}


def test_dag_test_ingests_then_a_second_run_is_skipped(airflow_db, dagbag, s3_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT",
                       '{"conn_type": "aws", "login": "testing", "password": "testing", '
                       f'"extra": {{"region_name": "us-east-1", "endpoint_url": "{s3_env.endpoint_url}"}}}}')
    rows = "".join(f"u{i % 3},A{i:03d},T1,{i % 2},2020-01-01 00:00:{i:02d},7\n" for i in range(12))
    client = _upload(s3_env, "interactions/date=2020-01-01/a.csv", HEADER + rows + "u9,A1,T1,5,2020-01-01 00:00:00,7\n")
    dag = dagbag.dags["dkt_retrain"]

    # Ingestion only: the training half (tested in test_retrain_dag.py) is marked success, not run.
    first = dag.test(run_conf={"models": ["lgbm"]}, mark_success_pattern=AFTER_INGEST)
    assert str(first.state) == "success", _states(first)
    assert {k: v for k, v in _states(first).items() if k in ("plan", "ingest", "has_new_data")} == {
        "plan": "success", "ingest": "success", "has_new_data": "success"}
    body = client.get_object(Bucket=s3_env.bucket, Key="curated/v=000001/interactions.parquet")["Body"].read()
    assert len(pd.read_parquet(io.BytesIO(body))) == 12
    rejected = client.list_objects_v2(Bucket=s3_env.bucket, Prefix="quarantine/")["Contents"]
    assert any(o["Key"].endswith("a.csv.rejected.csv") for o in rejected)

    second = dag.test(mark_success_pattern=AFTER_INGEST)
    assert str(second.state) == "success"
    assert _states(second)["has_new_data"] == "success"  # the short-circuit task itself succeeds ...
    ingest_ti = next(ti for ti in second.get_task_instances() if ti.task_id == "ingest")
    assert ingest_ti.xcom_pull(task_ids="ingest")["status"] == "nothing_new"  # ... and says why it stopped
    assert client.list_objects_v2(Bucket=s3_env.bucket, Prefix="curated/v=000002/")["KeyCount"] == 0
