"""The hostname a task records when it starts (Airflow's ``[core] hostname_callable``, set by
``make airflow-cluster``): the Celery worker's own name (``DKT_WORKER_NAME``, e.g. ``w1@host``), so that
``TaskInstance.hostname`` tells apart several workers running on one machine; the machine's FQDN otherwise
(Airflow's default)."""

from __future__ import annotations

import socket

from dkt_core.settings import AirflowSettings, load


def hostname() -> str:
    """``DKT_WORKER_NAME`` when set, else ``socket.getfqdn()``."""
    return load(AirflowSettings).worker_name or socket.getfqdn()
