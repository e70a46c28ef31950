"""DAG settings read from the environment (nothing hard-coded) and the retry policy of S3 tasks."""

from __future__ import annotations

import os
from datetime import timedelta

RETRAIN_DAG_ID = "dkt_retrain"
SENSOR_DAG_ID = "dkt_ingest_sensor"
# Airflow connection holding the S3 endpoint/credentials (AIRFLOW_CONN_AWS_DEFAULT in `make airflow`).
AWS_CONN_ID = os.environ.get("DKT_AWS_CONN_ID", "aws_default")
# cron, a preset like "@daily", or "none" for manual/data-triggered runs only
RETRAIN_SCHEDULE = os.environ.get("DKT_RETRAIN_SCHEDULE", "@daily")
SENSOR_SCHEDULE = os.environ.get("DKT_SENSOR_SCHEDULE", "@continuous")
SENSOR_POKE_S = int(os.environ.get("DKT_SENSOR_POKE_S", "30"))
SENSOR_TIMEOUT_S = int(os.environ.get("DKT_SENSOR_TIMEOUT_S", "3600"))
DEFAULT_MODELS = [m for m in os.environ.get("DKT_MODELS", "lgbm,lstm").split(",") if m]
RAW_PREFIX = os.environ.get("DKT_RAW_PREFIX", "interactions/")


def schedule_or_none(value: str) -> str | None:
    return None if value.strip().lower() in {"", "none", "null", "manual"} else value


# S3 calls: transient failures (endpoint restarting, throttling, another run holding the ingest lease)
# are retried with exponential backoff: 10 s, 20 s, 40 s, ... capped at 5 min.
S3_RETRY = {
    "retries": int(os.environ.get("DKT_S3_TASK_RETRIES", "4")),
    "retry_delay": timedelta(seconds=int(os.environ.get("DKT_S3_RETRY_DELAY_S", "10"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
}

DEFAULT_ARGS = {
    "owner": "dkt-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
}

# Gate: promote if challenger AUC >= champion AUC - tolerance (the per-run param defaults to this).
GATE_TOLERANCE = float(os.environ.get("DKT_GATE_TOLERANCE", "0.002"))
# Minimum batch: train + deploy only when the answered rows added since the last training reach both
# (defaults of the min_new_rows / min_new_users params; dkt_core.retrain.settings reads the same variables).
MIN_NEW_ROWS = int(os.environ.get("DKT_RETRAIN_MIN_NEW_ROWS", "500"))
MIN_NEW_USERS = int(os.environ.get("DKT_RETRAIN_MIN_NEW_USERS", "20"))
# JSON: model name -> TrainConfig.model_options overrides, e.g. '{"lgbm": {"num_boost_round": 200}}'
MODEL_OPTIONS = os.environ.get("DKT_MODEL_OPTIONS", "{}")

# Registry/Docker calls (build, push, rollout): retried with backoff like S3. A rollout that fails its
# health/smoke check is *not* retried (the task raises AirflowFailException): it was rolled back already.
DOCKER_RETRY = {
    "retries": int(os.environ.get("DKT_DOCKER_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=int(os.environ.get("DKT_DOCKER_RETRY_DELAY_S", "30"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}
