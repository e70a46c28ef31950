"""dkt_ingest_sensor run for real (dag.test()) against the moto S3 server: a pending upload triggers
dkt_retrain; objects the manifest already consumed do not."""

from __future__ import annotations

import pytest
from dagutil import upload

pytestmark = pytest.mark.airflow

SENSOR, RETRAIN = "dkt_ingest_sensor", "dkt_retrain"


def _retrain_run_ids() -> set[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {r for (r,) in session.query(DagRun.run_id).filter(DagRun.dag_id == RETRAIN)}


def _active_retrain_runs() -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).filter(DagRun.dag_id == RETRAIN,
                                            DagRun.state.in_(["queued", "running"])).count()


@pytest.fixture
def triggered():
    """Run ids of the dkt_retrain runs a test triggered (no scheduler runs them: they stay queued); deleted
    afterwards, else every later sensor run in this session would see a retrain 'already queued'."""
    before = _retrain_run_ids()
    assert _active_retrain_runs() == 0, "a dkt_retrain run is queued/running: the sensor would wait for it"
    new: set[str] = set()
    yield lambda: (new.update(_retrain_run_ids() - before), set(new))[1]
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    new.update(_retrain_run_ids() - before)
    with create_session() as session:
        for dr in session.query(DagRun).filter(DagRun.dag_id == RETRAIN, DagRun.run_id.in_(new)):
            session.delete(dr)


@pytest.fixture
def sensor_dag(dagbag, monkeypatch):
    """The sensor DAG with a short poke interval and timeout (settings are read when the file is parsed)."""
    dag = dagbag.dags[SENSOR]
    sensor = dag.get_task("wait_for_new_objects")
    monkeypatch.setattr(sensor, "poke_interval", 1)
    monkeypatch.setattr(sensor, "timeout", 3)
    return dag


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _xcom(run, task_id: str, key: str = "return_value"):
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def test_a_pending_upload_triggers_retrain(sensor_dag, env, s3_env, logs, triggered):
    initial, _ = logs
    upload(env, s3_env.bucket, "interactions/date=2025-01-01/a.csv", initial.head(50))

    run = sensor_dag.test()
    assert str(run.state) == "success", _states(run)
    assert _states(run) == {"wait_for_new_objects": "success", "trigger_retrain": "success"}
    assert _xcom(run, "wait_for_new_objects") == {"pending": 1, "keys": ["interactions/date=2025-01-01/a.csv"]}
    new = triggered()
    assert len(new) == 1, new
    assert _xcom(run, "trigger_retrain", "trigger_run_id") in new
    from airflow.models.dagrun import DagRun

    (dr,) = DagRun.find(dag_id=RETRAIN, run_id=next(iter(new)))
    assert dr.conf == {"s3_prefix": "interactions/"}


def test_consumed_objects_do_not_trigger_and_a_new_one_does(sensor_dag, env, s3_env, logs, triggered):
    from dkt_core.ingest import IngestConfig, ingest, load_state, pending_objects

    initial, later = logs
    upload(env, s3_env.bucket, "interactions/date=2025-01-01/a.csv", initial.head(50))
    upload(env, s3_env.bucket, "interactions/date=2025-01-02/b.csv", initial.iloc[50:120])
    result = ingest(IngestConfig(run_id="manual__backfill-1", settings=s3_env))
    assert result.status == "ingested" and result.objects == 2
    assert pending_objects(env, s3_env.bucket, "interactions/", load_state(env, s3_env.bucket)) == []

    idle = sensor_dag.test()
    # nothing pending: the sensor pokes until its timeout and soft-fails (skipped), so nothing is triggered
    assert _states(idle) == {"wait_for_new_objects": "skipped", "trigger_retrain": "skipped"}
    assert triggered() == set()

    upload(env, s3_env.bucket, "interactions/date=2025-01-03/c.csv", later.head(30))
    busy = sensor_dag.test()
    assert _states(busy) == {"wait_for_new_objects": "success", "trigger_retrain": "success"}
    assert _xcom(busy, "wait_for_new_objects") == {"pending": 1, "keys": ["interactions/date=2025-01-03/c.csv"]}
    assert len(triggered()) == 1
