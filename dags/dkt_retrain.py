"""
### dkt_retrain — keep the served DKT model fresh

**Stages** (each task calls one `dkt_core` function; XCom carries only ids and URIs):

1. `plan` — resolve the run's params (models, deploy flags, training window).
2. `ingest` — new raw objects under the S3 prefix → validated → rejected rows to `quarantine/<run>/`,
   raw objects archived, valid rows appended to a new immutable `curated/v=NNNNNN/` version.
   The run id is the idempotency key: a retry or a rerun never ingests twice, nothing is skipped.
3. `has_new_data` — short-circuit: when nothing new arrived the run ends here as **skipped**.
4. *(train → gate → package → deploy: added after `has_new_data`)*

**Triggers**: schedule `DKT_RETRAIN_SCHEDULE` (default daily), the manual form below, and the
`dkt_ingest_sensor` DAG, which triggers this one when new objects arrive. See docs/airflow.md.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task
from dkt_airflow import settings as cfg
from dkt_airflow.callbacks import on_failure


@dag(
    dag_id=cfg.RETRAIN_DAG_ID,
    schedule=cfg.schedule_or_none(cfg.RETRAIN_SCHEDULE),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dkt", "retrain", "ingest"],
    doc_md=__doc__,
    default_args={**cfg.DEFAULT_ARGS, "on_failure_callback": on_failure},
    on_failure_callback=on_failure,
    params={
        "models": Param(cfg.DEFAULT_MODELS, type="array", items={"type": "string"}, minItems=1,
                        description="Model names to train (dkt_core model registry)"),
        "force_deploy": Param(False, type="boolean", description="Deploy even if the gate rejects"),
        "skip_deploy": Param(False, type="boolean", description="Train and evaluate only; never deploy"),
        "s3_prefix": Param(cfg.RAW_PREFIX, type="string", pattern=r"^[A-Za-z0-9_.=/-]+/$",
                           description="Prefix of raw interaction uploads in the platform bucket"),
        "training_window_days": Param(None, type=["null", "integer"], minimum=1,
                                      description="Train on the last N days only (empty: all data)"),
    },
)
def dkt_retrain():
    @task(task_id="plan", retries=0)
    def plan() -> dict:
        """Resolve and check the params once, so later tasks read one small dict."""
        from airflow.sdk import get_current_context

        ctx = get_current_context()
        p = ctx["params"]
        if p["force_deploy"] and p["skip_deploy"]:
            raise ValueError("params force_deploy and skip_deploy are both true: choose one")
        return {
            "run_id": ctx["run_id"],
            "models": list(p["models"]),
            "force_deploy": bool(p["force_deploy"]),
            "skip_deploy": bool(p["skip_deploy"]),
            "s3_prefix": p["s3_prefix"],
            "training_window_days": p["training_window_days"],
        }

    @task(task_id="ingest", **cfg.S3_RETRY)
    def ingest(run_plan: dict) -> dict:
        """Ingest new raw objects into a new curated version (idempotent per run id)."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.ingest import IngestConfig
        from dkt_core.ingest import ingest as run_ingest

        return run_ingest(IngestConfig(run_id=run_plan["run_id"], prefix=run_plan["s3_prefix"])).to_dict()

    @task.short_circuit(task_id="has_new_data", retries=0)
    def has_new_data(result: dict) -> bool:
        """Stop the run (downstream tasks skipped) when no new rows were ingested."""
        import logging

        if result["status"] != "ingested":
            logging.getLogger(__name__).info("nothing to retrain on: %s", result.get("reason"))
            return False
        return True

    run_plan = plan()
    ingested = ingest(run_plan)
    proceed = has_new_data(ingested)
    # Downstream stages hang off `proceed` and read `ingested["dataset_uri"]` / `ingested["data_version"]`
    # and `run_plan["models"]`, e.g.:  proceed >> train.expand(model=run_plan["models"]) >> gate >> ...
    return proceed


dkt_retrain()
