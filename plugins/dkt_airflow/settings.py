"""DAG settings (``AirflowSettings`` of dkt_core/settings.py, loaded once when the DAG files are parsed: an
edge), the retry policy of S3 and Docker tasks, and the settings a task reads when it runs and hands to its
dkt_core step (``retrain_settings``, ``ingest_config``, ``bentoml_home``, ``deploy_args``): the steps below never
read the environment themselves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from dkt_core.settings import (
    AirflowSettings,
    DeploySettings,
    HomeSettings,
    IngestSettings,
    ReadLimits,
    RetrainSettings,
    S3Settings,
    ServingSettings,
    load,
)

SETTINGS = load(AirflowSettings)

RETRAIN_DAG_ID = "dkt_retrain"
SENSOR_DAG_ID = "dkt_ingest_sensor"
# Where the dkt_reports plugin (dkt_airflow/reports.py) mounts its pages in Airflow's API server.
REPORTS_URL_PREFIX = "/dkt-reports"
# Airflow connection holding the S3 endpoint/credentials (AIRFLOW_CONN_AWS_DEFAULT in `make airflow`).
AWS_CONN_ID = SETTINGS.aws_conn_id
# cron, a preset like "@daily", or "none" for manual/data-triggered runs only
RETRAIN_SCHEDULE = SETTINGS.retrain_schedule
SENSOR_SCHEDULE = SETTINGS.sensor_schedule
SENSOR_POKE_S = SETTINGS.sensor_poke_s
SENSOR_TIMEOUT_S = SETTINGS.sensor_timeout_s
DEFAULT_MODELS = list(SETTINGS.models)
# The model registry's names (dkt_core.models.MODELS keys), spelled here because importing the registry loads
# torch, too slow for every DAG parse; tests/airflow/test_report_plugin.py checks the two lists are equal.
MODEL_NAMES = ("lgbm", "lstm", "lstm_attn", "bert", "saint")
# The Assets the retrain DAG produces (task outlets: the Assets view shows curated versions and the champion
# with their lineage). Their URIs name the bucket Airflow's environment declares (DKT_S3_BUCKET, default
# dkt-platform): DAG files are parsed without the connection, so a connection naming another bucket (extra
# "bucket") writes there while the Assets keep this name; set DKT_S3_BUCKET for Airflow to match it.
ASSET_BUCKET = load(S3Settings).bucket
CURATED_ASSET_URI = f"s3://{ASSET_BUCKET}/curated"
CHAMPION_ASSET_URI = f"s3://{ASSET_BUCKET}/models/champion.json"
RAW_PREFIX = SETTINGS.raw_prefix


def schedule_or_none(value: str) -> str | None:
    return None if value.strip().lower() in {"", "none", "null", "manual"} else value


# S3 calls: transient failures (endpoint restarting, throttling, another run holding the ingest lease)
# are retried with exponential backoff: 10 s, 20 s, 40 s, ... capped at 5 min.
S3_RETRY = {
    "retries": SETTINGS.s3_task_retries,
    "retry_delay": timedelta(seconds=SETTINGS.s3_retry_delay_s),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
}

# The ingest task ends (and Airflow retries it) well before its lease could expire: a live run renews
# the lease every TTL/4, so only a dead or killed attempt ever lets it lapse, and then the retry fences it.
INGEST_TIMEOUT = timedelta(seconds=load(IngestSettings).lease_ttl_s * 3 // 4)

DEFAULT_ARGS = {
    "owner": "dkt-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
}

# Gate: promote if challenger AUC >= champion AUC - tolerance (the per-run param defaults to this).
GATE_TOLERANCE = SETTINGS.gate_tolerance
# Minimum batch: train + deploy only when the answered rows added since the last training reach both
# (defaults of the min_new_rows / min_new_users params; RetrainSettings reads the same declared variables).
MIN_NEW_ROWS = SETTINGS.min_new_rows
MIN_NEW_USERS = SETTINGS.min_new_users
# JSON: model name -> TrainConfig.model_options overrides, e.g. '{"lgbm": {"num_boost_round": 200}}'
MODEL_OPTIONS = SETTINGS.model_options

# Registry/Docker calls (build, push, rollout): retried with backoff like S3. A rollout that fails its
# health/smoke check is *not* retried (the task raises AirflowFailException): it was rolled back already.
DOCKER_RETRY = {
    "retries": SETTINGS.docker_task_retries,
    "retry_delay": timedelta(seconds=SETTINGS.docker_retry_delay_s),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


# --- read when a task runs (the task's environment decides), handed to the task's one dkt_core step ----------

def retrain_settings() -> RetrainSettings:
    """Hold-out, bootstrap, gate, judge thresholds, deploy mode and cache of the retraining steps."""
    return load(RetrainSettings)


def ingest_config(run_id: str, prefix: str):
    """The ingest run's config: lease TTL, run budget (``IngestSettings``) and read caps (``ReadLimits``)."""
    from dkt_core.ingest import IngestConfig

    return IngestConfig.with_settings(run_id, prefix, load(IngestSettings), load(ReadLimits))


def bentoml_home() -> Path:
    """The worker's BentoML model store (``BENTOML_HOME`` or ``~/bentoml``)."""
    return load(HomeSettings).bentoml_home


def deploy_args() -> dict[str, Any]:
    """What ``dkt_core.retrain.promote.deploy_model`` needs besides the run's values: the retraining and
    deploy settings, the service's key-hash file and the BentoML store."""
    return {"settings": retrain_settings(), "deploy_settings": load(DeploySettings),
            "api_keys_file": load(ServingSettings).api_keys_file, "bentoml_home": bentoml_home()}
