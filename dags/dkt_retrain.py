"""
### dkt_retrain — keep the served DKT model fresh

**Stages** (each task calls one `dkt_core` function; XCom carries only ids, URIs and small metrics):

1. `plan` — resolve the run's params (models, model options, deploy flags, gate tolerance, window).
2. `ingest` — new raw objects under the S3 prefix → validated → rejected rows to `quarantine/<run>/`,
   raw objects archived, valid rows appended to a new immutable `curated/v=NNNNNN/` version.
   The run id is the idempotency key: a retry or a rerun never ingests twice, nothing is skipped.
3. `has_new_data` — short-circuit: when nothing new arrived the run ends here as **skipped**.
4. `split_holdout` — train users / fixed hold-out users (stable hash of the user id) → `splits/v=N/`.
5. `live_eval` — *before* the new rows train anything, the serving champion is scored on them
   (each from its own past) → `reports/live_auc.json`.
6. `train` — the selected models (one ensemble artifact) → `models/<model_version>/artifact.tar.gz`.
7. `evaluate` — challenger **and** champion on the same hold-out users.
8. `report` — `models/<model_version>/report.html`: metrics, ROC + calibration, data quality, drift,
   live-AUC trend. The URI is in this task's log and XCom.
9. `gate` — promote if challenger AUC ≥ champion AUC − `gate_tolerance` (first model: promote;
   `force_deploy`: promote anyway). Otherwise `keep_champion` runs and logs why; promotion is skipped.
10. `package` → `deploy` (image build + push, Swarm rollout, smoke test; automatic rollback) →
   `set_champion` (`models/champion.json`, only after a successful rollout). `skip_deploy` or
   `DKT_DEPLOY=none`: promotion = BentoML model + champion alias.

**Triggers**: schedule `DKT_RETRAIN_SCHEDULE` (default daily), the manual form below, and the
`dkt_ingest_sensor` DAG, which triggers this one when new objects arrive. See docs/airflow.md.
"""

from __future__ import annotations

import json
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
        "model_options": Param(json.loads(cfg.MODEL_OPTIONS), type="object",
                               description='Per-model config overrides, e.g. {"lgbm": {"num_boost_round": 200}}'),
        "force_deploy": Param(False, type="boolean", description="Promote and deploy even if the gate rejects"),
        "skip_deploy": Param(False, type="boolean",
                             description="Promotion = BentoML model + champion alias only (no image, no rollout)"),
        "gate_tolerance": Param(cfg.GATE_TOLERANCE, type="number", minimum=0,
                                description="Promote if challenger AUC >= champion AUC - tolerance"),
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
            "model_options": dict(p["model_options"] or {}),
            "force_deploy": bool(p["force_deploy"]),
            "skip_deploy": bool(p["skip_deploy"]),
            "gate_tolerance": float(p["gate_tolerance"]),
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

    @task(task_id="split_holdout", **cfg.S3_RETRY)
    def split_holdout(ingested: dict) -> dict:
        """Split the curated version into train users and the fixed hold-out users (`splits/v=N/`)."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.holdout import prepare_split

        return prepare_split(ingested["data_version"])

    @task(task_id="live_eval", **cfg.S3_RETRY)
    def live_eval(ingested: dict) -> dict:
        """Score the serving champion on the newly ingested rows, before they train anything."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.live_eval import live_evaluate

        return live_evaluate(ingested["data_version"], ingested["parent_version"])

    @task(task_id="train", retries=1)
    def train(run_plan: dict, ingested: dict, split: dict) -> dict:
        """Train the selected models on the train users; upload the artifact (a retry reuses it)."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.training import train_challenger

        return train_challenger(run_plan["run_id"], ingested["data_version"], split["train_uri"],
                                run_plan["models"], model_options=run_plan["model_options"],
                                training_window_days=run_plan["training_window_days"])

    @task(task_id="evaluate", **cfg.S3_RETRY)
    def evaluate(trained: dict, split: dict) -> dict:
        """Challenger and champion on the same hold-out users."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.evaluation import evaluate_candidates

        return evaluate_candidates(trained["model_version"], trained["artifact_uri"], split["holdout_uri"])

    @task(task_id="report", **cfg.S3_RETRY)
    def report(run_plan: dict, ingested: dict, evaluation: dict, live: dict) -> dict:
        """Write the run report next to the artifact; its URI is logged here and in XCom."""
        import logging

        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.report import build_report

        out = build_report(run_plan["run_id"], ingested["data_version"], ingested["parent_version"], evaluation,
                           tolerance=run_plan["gate_tolerance"], force=run_plan["force_deploy"])
        logging.getLogger(__name__).warning("RUN REPORT: %s (live AUC: %s)", out["report_uri"], live.get("auc"))
        return out

    @task.branch(task_id="gate", retries=0)
    def gate(run_plan: dict, evaluation: dict, reported: dict) -> str:
        """Promote (→ package) or keep the champion (→ keep_champion); the reason is logged and in XCom."""
        import logging

        from airflow.sdk import get_current_context

        from dkt_core.retrain.gate import METRIC, decide

        decision = decide((evaluation["challenger"] or {}).get(METRIC), (evaluation["champion"] or {}).get(METRIC),
                          tolerance=run_plan["gate_tolerance"], force=run_plan["force_deploy"],
                          champion_version=evaluation["champion_version"]).to_dict()
        get_current_context()["ti"].xcom_push(key="decision", value=decision)
        logging.getLogger(__name__).warning("GATE %s: %s (report %s)", "PROMOTE" if decision["promote"] else "REJECT",
                                            decision["reason"], reported["report_uri"])
        return "package" if decision["promote"] else "keep_champion"

    @task(task_id="keep_champion", retries=0)
    def keep_champion() -> dict:
        """The gate rejected the challenger: nothing is deployed, the champion alias is untouched."""
        import logging

        from airflow.sdk import get_current_context

        decision = get_current_context()["ti"].xcom_pull(task_ids="gate", key="decision")
        logging.getLogger(__name__).warning("CHAMPION KEPT: %s", decision["reason"])
        return decision

    @task(task_id="package", **cfg.S3_RETRY)
    def package(trained: dict) -> dict:
        """Store the artifact as the BentoML model dkt-model:<model_version>."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.promote import package_model

        return package_model(trained["model_version"], trained["artifact_uri"])

    @task(task_id="deploy", **cfg.DOCKER_RETRY)
    def deploy(run_plan: dict, trained: dict, packaged: dict) -> dict:
        """Build + push the image and roll the Swarm service (smoke test; automatic rollback)."""
        from airflow.sdk.exceptions import AirflowFailException
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.promote import RolloutFailed, deploy_model

        try:
            return deploy_model(trained["model_version"], trained["artifact_uri"], trained["data_version"],
                                skip=run_plan["skip_deploy"])
        except RolloutFailed as err:  # rolled back already: retrying would repeat the failed rollout
            raise AirflowFailException(str(err)) from err

    @task(task_id="set_champion", **cfg.S3_RETRY)
    def set_champion(run_plan: dict, trained: dict, evaluation: dict, deployed: dict, packaged: dict,
                     reported: dict) -> dict:
        """Move the champion alias (models/champion.json) — only after the rollout succeeded."""
        from dkt_airflow.s3env import apply_connection

        apply_connection()
        from dkt_core.retrain.promote import set_champion as mark

        return mark(run_plan["run_id"], trained["model_version"], trained["artifact_uri"], trained["data_version"],
                    evaluation, deployed, reported["report_uri"], packaged["bentoml_tag"])

    run_plan = plan()
    ingested = ingest(run_plan)
    proceed = has_new_data(ingested)
    split = split_holdout(ingested)
    live = live_eval(ingested)
    proceed >> [split, live]
    trained = train(run_plan, ingested, split)
    live >> trained  # live evaluation sees the new rows before any model trains on them
    evaluated = evaluate(trained, split)
    reported = report(run_plan, ingested, evaluated, live)
    decision = gate(run_plan, evaluated, reported)
    packaged = package(trained)
    decision >> [packaged, keep_champion()]
    deployed = deploy(run_plan, trained, packaged)
    set_champion(run_plan, trained, evaluated, deployed, packaged, reported)


dkt_retrain()
