"""The header both DAG files share: start date, no catch-up, one active run, the failure callback on every task,
the schedule setting read through ``schedule_or_none``. Each DAG adds only what is its own (params, callbacks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dkt_airflow import settings as cfg
from dkt_airflow.callbacks import on_failure


def dag_header(dag_id: str, schedule: str, tags: list[str], doc_md: str | None) -> dict[str, Any]:
    """The ``@dag`` keyword arguments every dkt DAG has (tests/airflow/test_dags.py checks the policies)."""
    return {
        "dag_id": dag_id,
        "schedule": cfg.schedule_or_none(schedule),
        "start_date": datetime(2025, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "tags": tags,
        "doc_md": doc_md,
        "default_args": {**cfg.DEFAULT_ARGS, "on_failure_callback": on_failure},
    }
