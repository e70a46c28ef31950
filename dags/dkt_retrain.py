"""
### dkt_retrain — keep the served DKT model fresh

**Stages** (each task calls one `dkt_core` function with a workspace — S3 client, bucket, cache — built
once per task from the Airflow connection; XCom carries only ids, URIs and small metrics):

1. `plan` — resolve the run's params (models, model options, deploy flags, gate tolerance, window).
2. `ingest` — new raw objects under the S3 prefix → validated → rejected rows to `quarantine/<run>/`,
   raw objects archived, valid rows appended to a new immutable `curated/v=NNNNNN/` version.
   The run id is the idempotency key: a retry or a rerun never ingests twice, nothing is skipped.
3. `has_new_data` — the minimum batch (short-circuit): training and deployment start only when the
   answered rows added since the last training reach `min_new_rows` from at least `min_new_users`
   users; below that the run ends here (later tasks **skipped**, run succeeds) and the reason is in the
   task log and the run's note. `retrain_anyway` trains on the latest curated version regardless.
4. `split_holdout` — train users / fixed hold-out users (stable hash of the user id) → `splits/v=N/`.
5. `live_eval` — *before* the new rows train anything, the serving champion is scored on the rows
   since the last training (each from its own past) → `reports/live_auc.json` (n, interval, "too few
   to judge" below the judge thresholds).
6. `prepare` → `train_member` (one mapped task per model: members train in parallel, on any worker; the
   grid labels each with its model, validation AUC and time) → `ensemble` (soft-vote weights from the
   members' validation predictions, the one artifact → `models/<model_version>/artifact.tar.gz`). A member
   is retried once; if it keeps failing, `ensemble` assembles the members that finished (at least one).
   `clean_scratch` (once `ensemble` is done, either way): the run's `runs/<run>/train/` is deleted when it
   committed (`runs/<run>/challenger.json` + its artifact), kept for a retry when not; other runs' scratch
   older than `DKT_TRAIN_SCRATCH_DAYS` is swept.
7. `evaluate` — challenger **and** champion on the same hold-out users; paired difference with interval.
8. `report` — `models/<model_version>/report.html`: metrics, ROC + calibration, data quality, drift,
   live-AUC trend. Open it from the task's extra link "Run report", the run's "Run report" tab or the
   "DKT run reports" menu entry (served from S3 by the dkt_reports plugin, behind Airflow's login).
9. `gate` — promote if challenger AUC ≥ champion AUC − `gate_tolerance` (first model: promote;
   `force_deploy`: promote anyway), as decided once by `report`; the reason states the paired
   difference and its interval. Otherwise
   `keep_champion` runs and logs why; promotion is skipped. The decision is the run's note.
10. `package` → `deploy` (image build + push, Swarm rollout, smoke test; automatic rollback) →
   `set_champion` (`models/champion.json`, only after a successful rollout). `skip_deploy` or
   `DKT_DEPLOY=none`: promotion = BentoML model + champion alias.

**Triggers**: schedule `DKT_RETRAIN_SCHEDULE` (default daily), the manual form below, and the
`dkt_ingest_sensor` DAG, which triggers this one when new objects arrive. See docs/airflow.md.
"""

from __future__ import annotations

import json

from airflow.sdk import Asset, Param, dag, task
from dkt_airflow import settings as cfg
from dkt_airflow.callbacks import on_failure
from dkt_airflow.dag_header import dag_header
from dkt_airflow.run_notes import gate_note

# What the DAG produces, as Airflow Assets (task outlets): the Assets view shows each curated version and
# champion as an event of the run that made it.
CURATED = Asset(name="dkt_curated", uri=cfg.CURATED_ASSET_URI, group="dkt")
CHAMPION = Asset(name="dkt_champion", uri=cfg.CHAMPION_ASSET_URI, group="dkt")
# Celery queue of the training tasks (DKT_TRAIN_QUEUE); unset: Airflow's default queue.
TRAIN_QUEUE = {"queue": cfg.SETTINGS.train_queue} if cfg.SETTINGS.train_queue else {}


@dag(
    **dag_header(cfg.RETRAIN_DAG_ID, cfg.RETRAIN_SCHEDULE, ["dkt", "retrain", "ingest"], __doc__),
    on_failure_callback=on_failure,
    params={
        # array + examples: the trigger form renders a multi-select of the registry's names
        "models": Param(cfg.DEFAULT_MODELS, type="array", items={"type": "string", "enum": list(cfg.MODEL_NAMES)},
                        examples=list(cfg.MODEL_NAMES), minItems=1, uniqueItems=True,
                        description="Models to train, one ensemble (dkt_core model registry)"),
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
        "min_new_rows": Param(cfg.MIN_NEW_ROWS, type="integer", minimum=0,
                              description="Retrain only when this many answered rows arrived since the last training"),
        "min_new_users": Param(cfg.MIN_NEW_USERS, type="integer", minimum=0,
                               description="... and they come from at least this many users"),
        "retrain_anyway": Param(False, type="boolean",
                                description="Train on the latest curated data even if too little (or nothing) is new"),
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
        from dkt_core.models import get_model_class

        if not p["models"]:
            raise ValueError("param models is empty: choose at least one model")
        for name in p["models"]:  # before anything is ingested: a bad name fails here, not in train
            get_model_class(name)  # ValueError "unknown model 'x'; choose from lgbm, lstm, ..."
        return {
            "run_id": ctx["run_id"],
            "models": list(p["models"]),
            "model_options": dict(p["model_options"] or {}),
            "force_deploy": bool(p["force_deploy"]),
            "skip_deploy": bool(p["skip_deploy"]),
            "gate_tolerance": float(p["gate_tolerance"]),
            "s3_prefix": p["s3_prefix"],
            "training_window_days": p["training_window_days"],
            "min_new_rows": int(p["min_new_rows"]),
            "min_new_users": int(p["min_new_users"]),
            "retrain_anyway": bool(p["retrain_anyway"]),
        }

    @task(task_id="ingest", execution_timeout=cfg.INGEST_TIMEOUT, outlets=[CURATED], **cfg.S3_RETRY)
    def ingest(run_plan: dict) -> dict:
        """Ingest new raw objects into a new curated version (idempotent per run id); the asset event names
        the latest curated version."""
        from airflow.sdk import get_current_context
        from dkt_airflow.s3env import workspace

        from dkt_core.ingest import ingest as run_ingest

        out = run_ingest(cfg.ingest_config(run_plan["run_id"], run_plan["s3_prefix"]), ws=workspace()).to_dict()
        get_current_context()["outlet_events"][CURATED].extra = {
            k: out.get(k) for k in ("data_version", "status", "rows_added") if k in out}
        return out

    @task.short_circuit(task_id="has_new_data", **cfg.S3_RETRY)
    def has_new_data(run_plan: dict, result: dict) -> dict | bool:
        """The minimum batch: go on (→ the batch: version to train, counts) only when enough rows arrived
        since the last training, or retrain_anyway; else stop here, the reason in the log and the run note."""
        import logging

        from airflow.sdk import get_current_context
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.batch import check_batch

        batch = check_batch(result, min_new_rows=run_plan["min_new_rows"], min_new_users=run_plan["min_new_users"],
                            retrain_anyway=run_plan["retrain_anyway"], settings=cfg.retrain_settings(),
                            ws=workspace())
        logging.getLogger(__name__).warning("BATCH %s: %s", "TRAIN" if batch["proceed"] else "STOP", batch["reason"])
        get_current_context()["ti"].xcom_push(key="run_note", value=batch["reason"])  # → the run's note
        return batch if batch["proceed"] else False

    @task(task_id="split_holdout", **cfg.S3_RETRY)
    def split_holdout(batch: dict) -> dict:
        """Split the curated version into train users and the fixed hold-out users (`splits/v=N/`)."""
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.holdout import prepare_split

        return prepare_split(batch["data_version"], settings=cfg.retrain_settings(), ws=workspace())

    @task(task_id="live_eval", **cfg.S3_RETRY)
    def live_eval(batch: dict) -> dict:
        """Score the serving champion on the rows since the last training, before they train anything."""
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.live_eval import live_evaluate

        return live_evaluate(batch["data_version"], batch["parent_version"], new_rows_uri=batch.get("new_rows_uri"),
                             settings=cfg.retrain_settings(), ws=workspace())

    @task(task_id="prepare", **cfg.S3_RETRY)
    def prepare(run_plan: dict, batch: dict, split: dict) -> list[dict]:
        """Fit the split and features once for the run (stored under runs/<run>/train/); one job per model."""
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.training import prepare_training

        return prepare_training(run_plan["run_id"], batch["data_version"], split["train_uri"], run_plan["models"],
                                model_options=run_plan["model_options"],
                                training_window_days=run_plan["training_window_days"], ws=workspace())

    # One mapped task instance per model, labelled in the grid with the model, its validation AUC and time.
    # DKT_TRAIN_QUEUE routes it to the Celery workers of that queue (torch training on GPU workers).
    @task(task_id="train_member", retries=1, map_index_template="{{ dkt_member }}", **TRAIN_QUEUE,
          doc_md="Train one member on the prepared set (any worker); a retry reuses a finished member.")
    def train_member(job: dict) -> dict:
        """Train one member on the prepared set (any worker); a retry reuses a finished member."""
        import logging

        from airflow.sdk import get_current_context
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.training import train_run_member

        ctx = get_current_context()
        ctx["dkt_member"] = job["model"]  # the label even if training fails
        out = train_run_member(job["run_id"], job["model"], ws=workspace())
        if "valid_auc" in out:
            ctx["dkt_member"] = (f"{job['model']}: AUC {out['valid_auc']:.3f} (n={out['n_valid_rows']}), "
                                 f"{out['train_seconds']:.0f} s")
        logging.getLogger(__name__).warning("MEMBER %s", ctx["dkt_member"])
        return out

    # all_done_min_one_success: the ensemble is assembled from the members that finished, once every member
    # is done (a member's task that failed after its retries is left out; none finished: this task fails).
    @task(task_id="ensemble", trigger_rule="all_done_min_one_success", **cfg.S3_RETRY)
    def ensemble(run_plan: dict) -> dict:
        """Fit the soft-vote weights on the members' validation predictions; upload the one artifact."""
        from airflow.sdk.exceptions import AirflowFailException
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.training import NoMemberTrained, assemble_challenger

        try:
            return assemble_challenger(run_plan["run_id"], run_plan["models"], ws=workspace())
        except NoMemberTrained as err:  # every member failed after its retries: retrying here changes nothing
            raise AirflowFailException(str(err)) from err

    # all_done: after ensemble whatever its state; the step decides from the bucket (a run that did not commit
    # keeps its scratch for its retry). A run stopped by has_new_data skips it with the rest.
    @task(task_id="clean_scratch", trigger_rule="all_done", **cfg.S3_RETRY)
    def clean_scratch(run_plan: dict) -> dict:
        """Delete this run's training scratch once it committed; sweep other runs' stale scratch."""
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.scratch import clean_training_scratch

        return clean_training_scratch(run_plan["run_id"], settings=cfg.retrain_settings(), ws=workspace())

    @task(task_id="evaluate", **cfg.S3_RETRY)
    def evaluate(trained: dict, split: dict) -> dict:
        """Challenger and champion on the same hold-out users."""
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.evaluation import evaluate_candidates

        return evaluate_candidates(trained["model_version"], trained["artifact_uri"], split["holdout_uri"],
                                   artifact_sha256=trained.get("artifact_sha256"), settings=cfg.retrain_settings(),
                                   ws=workspace())

    @task(task_id="report", **cfg.S3_RETRY)
    def report(run_plan: dict, batch: dict, evaluation: dict, live: dict) -> dict:
        """Write the run report next to the artifact; its URI is logged here and in XCom."""
        import logging

        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.report import build_report

        out = build_report(run_plan["run_id"], batch["data_version"], batch["parent_version"], evaluation,
                           tolerance=run_plan["gate_tolerance"], force=run_plan["force_deploy"],
                           new_rows_uri=batch.get("new_rows_uri"), settings=cfg.retrain_settings(), ws=workspace())
        logging.getLogger(__name__).warning("RUN REPORT: %s (live AUC: %s, 95 %% CI %s, %s rows from %s users: %s)",
                                            out["report_uri"], live.get("auc"), live.get("auc_ci95"),
                                            live.get("n_scored"), live.get("n_users"),
                                            live.get("judgement", live.get("reason")))
        return out

    @task.branch(task_id="gate", retries=0)
    def gate(reported: dict) -> str:
        """Promote (→ package) or keep the champion (→ keep_champion) as the report decided (one decision per
        run: the report applied the rule to the evaluation); the reason is logged and in XCom."""
        import logging

        from airflow.sdk import get_current_context

        decision = reported["gate"]
        ti = get_current_context()["ti"]
        ti.xcom_push(key="decision", value=decision)
        ti.xcom_push(key="run_note", value=gate_note(decision, reported))  # → the run's note
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
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.promote import package_model

        return package_model(trained["model_version"], trained["artifact_uri"],
                             artifact_sha256=trained.get("artifact_sha256"), bentoml_home=cfg.bentoml_home(),
                             ws=workspace())

    @task(task_id="deploy", **cfg.DOCKER_RETRY)
    def deploy(run_plan: dict, trained: dict, packaged: dict) -> dict:
        """Build + push the image and roll the Swarm service (smoke test; automatic rollback)."""
        from airflow.sdk.exceptions import AirflowFailException
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.promote import RolloutFailed, deploy_model

        try:
            return deploy_model(trained["model_version"], trained["artifact_uri"], trained["data_version"],
                                skip=run_plan["skip_deploy"], packaged=packaged,
                                artifact_sha256=trained.get("artifact_sha256"), **cfg.deploy_args(), ws=workspace())
        except RolloutFailed as err:  # rolled back already: retrying would repeat the failed rollout
            raise AirflowFailException(str(err)) from err

    @task(task_id="set_champion", outlets=[CHAMPION], **cfg.S3_RETRY)
    def set_champion(run_plan: dict, trained: dict, evaluation: dict, deployed: dict, packaged: dict,
                     reported: dict) -> dict:
        """Move the champion alias (models/champion.json) — only after the rollout succeeded."""
        from airflow.sdk import get_current_context
        from dkt_airflow.s3env import workspace

        from dkt_core.retrain.promote import set_champion as mark

        out = mark(run_plan["run_id"], trained["model_version"], trained["artifact_uri"], trained["data_version"],
                   evaluation, deployed, reported["report_uri"], packaged["bentoml_tag"],
                   artifact_sha256=trained.get("artifact_sha256"), ws=workspace())
        get_current_context()["outlet_events"][CHAMPION].extra = {
            "model_version": trained["model_version"], "data_version": trained["data_version"]}
        return out

    run_plan = plan()
    ingested = ingest(run_plan)
    batch = has_new_data(run_plan, ingested)  # the batch to train on, or the run stops here
    split = split_holdout(batch)
    live = live_eval(batch)
    jobs = prepare(run_plan, batch, split)
    live >> jobs  # live evaluation sees the new rows before any model trains on them
    members = train_member.expand(job=jobs)
    trained = ensemble(run_plan)
    members >> trained
    trained >> clean_scratch(run_plan)
    evaluated = evaluate(trained, split)
    reported = report(run_plan, batch, evaluated, live)
    decision = gate(reported)
    packaged = package(trained)
    decision >> [packaged, keep_champion()]
    deployed = deploy(run_plan, trained, packaged)
    set_champion(run_plan, trained, evaluated, deployed, packaged, reported)


dkt_retrain()
