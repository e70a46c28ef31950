"""
### dkt_ingest_sensor — start `dkt_retrain` when new interaction objects arrive

A reschedule-mode sensor lists the raw prefix and compares each (key, ETag) with the ingestion
manifest; when something is pending and no `dkt_retrain` run is queued or running, it triggers one.
Idle runs end as *skipped* after `DKT_SENSOR_TIMEOUT_S` and the next one starts (`@continuous`).
Why a sensor and not an asset watcher: see docs/airflow.md.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag
from dkt_airflow import settings as cfg
from dkt_airflow.dag_header import dag_header
from dkt_airflow.sensors import PendingObjectsSensor


@dag(
    **dag_header(cfg.SENSOR_DAG_ID, cfg.SENSOR_SCHEDULE, ["dkt", "ingest", "sensor"], __doc__),
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
