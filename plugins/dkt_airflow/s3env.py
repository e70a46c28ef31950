"""Bridge the Airflow connection to dkt_core's S3 settings.

dkt_core reads ``DKT_S3_ENDPOINT_URL`` / ``DKT_S3_BUCKET`` / ``AWS_DEFAULT_REGION`` and boto3's credential
chain. Inside a task we fill those from the Airflow connection (``DKT_AWS_CONN_ID``, default
``aws_default``) so operators manage the endpoint, bucket (extra ``bucket``), region and credentials in
one place (UI, secrets backend or AIRFLOW_CONN_* env).

Precedence, per setting: a variable already set in the task's environment, then the connection, then
dkt_core's defaults (AWS S3, bucket ``dkt-platform``). ``make airflow`` therefore starts Airflow *without*
those variables (its embedded endpoint goes into the connection instead), so the connection is what
decides; set them on the workers only to override the connection deliberately.
"""

from __future__ import annotations

import logging
import os

from dkt_airflow.settings import AWS_CONN_ID

log = logging.getLogger(__name__)
# Shown as *** in logs and in the return value (the access key id is not secret, but it names an account).
_CREDENTIALS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


def apply_connection(conn_id: str = AWS_CONN_ID) -> dict[str, str]:
    """Export the connection's S3 settings to this task process; returns what was set (secrets as ***)."""
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
    applied, kept = {}, []
    for name, value in wanted.items():
        if not value:
            continue
        if os.environ.get(name):
            kept.append(name)
            continue
        os.environ[name] = str(value)
        applied[name] = "***" if name in _CREDENTIALS else str(value)
    # Which source decided is the first question when a task talks to the wrong S3; names only for secrets.
    log.info("S3 settings from connection %r: %s%s", conn_id, applied or "nothing",
             f"; kept from the environment (they override the connection): {', '.join(kept)}" if kept else "")
    return applied
