"""Failure callbacks: one clear, greppable summary of what failed and what to look at."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("dkt_airflow.failures")


def failure_summary(context: dict[str, Any]) -> str:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    lines = [
        "DKT RUN FAILED",
        f"  dag:      {getattr(dag_run, 'dag_id', None) or getattr(ti, 'dag_id', '?')}",
        f"  run:      {getattr(dag_run, 'run_id', None) or getattr(ti, 'run_id', '?')}",
    ]
    if ti is not None:
        tries = getattr(ti, "try_number", "?")
        lines.append(f"  task:     {ti.task_id} (try {tries}, retries {getattr(ti, 'max_tries', '?')})")
    if exc is not None:
        lines.append(f"  error:    {type(exc).__name__}: {exc}")
    if context.get("reason"):
        lines.append(f"  reason:   {context['reason']}")
    params = context.get("params") or {}
    if params:
        lines.append(f"  params:   {dict(params)}")
    lines.append("  next:     open the task log in the UI; S3 tasks retry with backoff before failing")
    return "\n".join(lines)


def on_failure(context: dict[str, Any]) -> None:
    """Task- and DAG-level on_failure_callback."""
    log.error(failure_summary(context))
