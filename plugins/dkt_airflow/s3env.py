"""Bridge the Airflow connection to dkt_core's S3 settings.

dkt_core reads ``DKT_S3_ENDPOINT_URL`` / ``DKT_S3_BUCKET`` and boto3's credential chain. Inside a task
we fill those from the Airflow connection (``DKT_AWS_CONN_ID``, default ``aws_default``) so operators
manage the endpoint and credentials in one place (UI, secrets backend or AIRFLOW_CONN_* env).
Variables already set in the environment win; without a connection the environment is used as is.
"""

from __future__ import annotations

import logging
import os

from dkt_airflow.settings import AWS_CONN_ID

log = logging.getLogger(__name__)


def apply_connection(conn_id: str = AWS_CONN_ID) -> dict[str, str]:
    """Export the connection's S3 settings to this task process; returns what was set (no secrets)."""
    try:
        from airflow.sdk import Connection

        conn = Connection.get(conn_id)
    except Exception as err:  # no such connection: plain environment / instance role
        log.info("connection %r not found (%s); using the environment for S3 settings", conn_id, err)
        return {}
    extra = conn.extra_dejson or {}
    wanted = {
        "DKT_S3_ENDPOINT_URL": extra.get("endpoint_url") or (extra.get("service_config", {})
                                                             .get("s3", {}).get("endpoint_url")),
        "AWS_DEFAULT_REGION": extra.get("region_name"),
        "DKT_S3_BUCKET": extra.get("bucket"),
        "AWS_ACCESS_KEY_ID": conn.login,
        "AWS_SECRET_ACCESS_KEY": conn.password,
    }
    applied = {}
    for name, value in wanted.items():
        if value and not os.environ.get(name):
            os.environ[name] = str(value)
            applied[name] = "***" if "SECRET" in name else str(value)
    return applied
