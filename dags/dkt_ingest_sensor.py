"""
### dkt_ingest_sensor — start `dkt_retrain` when new interaction objects arrive

A reschedule-mode sensor lists the raw prefix and compares each (key, ETag) with the ingestion
manifest; when something is pending and no `dkt_retrain` run is queued or running, it triggers one.
Idle runs end as *skipped* after `DKT_SENSOR_TIMEOUT_S` and the next one starts (`@continuous`).
Why a sensor and not an asset watcher: see docs/airflow.md.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag
from dkt_airflow import settings as cfg
from dkt_airflow.callbacks import on_failure
from dkt_airflow.sensors import PendingObjectsSensor


@dag(
    dag_id=cfg.SENSOR_DAG_ID,
    schedule=cfg.schedule_or_none(cfg.SENSOR_SCHEDULE),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dkt", "ingest", "sensor"],
    doc_md=__doc__,
    default_args={**cfg.DEFAULT_ARGS, "on_failure_callback": on_failure},
    params={"s3_prefix": Param(cfg.RAW_PREFIX, type="string", description="Raw upload prefix to watch")},
)
def dkt_ingest_sensor():
    wait = PendingObjectsSensor(
        task_id="wait_for_new_objects",
        prefix="{{ params.s3_prefix }}",
        retrain_dag_id=cfg.RETRAIN_DAG_ID,
        poke_interval=cfg.SENSOR_POKE_S,
        timeout=cfg.SENSOR_TIMEOUT_S,
        mode="reschedule",
        soft_fail=True,
        doc_md="True when a raw object is not in the manifest and no retrain is already queued/running.",
        **cfg.S3_RETRY,
    )

    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id=cfg.RETRAIN_DAG_ID,
        conf={"s3_prefix": "{{ params.s3_prefix }}"},
        wait_for_completion=False,
        retries=2,
    )
    wait >> trigger


dkt_ingest_sensor()
