"""Bridge the Airflow connection to a dkt_core workspace (S3 client, bucket, cache), once per task.

Inside a task the S3 endpoint, bucket (extra ``bucket``), region and credentials come from the Airflow
connection (``DKT_AWS_CONN_ID``, default ``aws_default``), so operators manage them in one place (UI,
secrets backend or AIRFLOW_CONN_* env). They are turned into a boto3 client directly: nothing is written
into the task's environment, and the credentials live only in that client.

Precedence, per setting: a variable already set in the task's environment (``DKT_S3_ENDPOINT_URL``,
``DKT_S3_BUCKET``, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), then the
connection, then dkt_core's defaults (AWS S3, bucket ``dkt-platform``, boto3's credential chain).
``make airflow`` therefore starts Airflow *without* those variables (its embedded endpoint goes into the
connection instead), so the connection is what decides; set them on the workers only to override the
connection deliberately.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from dkt_airflow.settings import AWS_CONN_ID

log = logging.getLogger(__name__)
# Shown as *** in logs (the access key id is not secret, but it names an account).
_CREDENTIALS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


def workspace(conn_id: str = AWS_CONN_ID):
    """The task's ``dkt_core.storage.workspace.Workspace``: a client and bucket from the connection (see the
    module docstring for the precedence) and the retraining cache directory."""
    from dkt_core.retrain.settings import RetrainSettings
    from dkt_core.storage.s3 import S3Settings, s3_client
    from dkt_core.storage.workspace import Workspace

    decided = connection_settings(conn_id)
    s3 = S3Settings.from_env()
    s3 = replace(s3, **{field: decided[name] for name, field in (
        ("DKT_S3_ENDPOINT_URL", "endpoint_url"), ("DKT_S3_BUCKET", "bucket"), ("AWS_DEFAULT_REGION", "region"))
        if name in decided})
    client = s3_client(s3, access_key=decided.get("AWS_ACCESS_KEY_ID"),
                       secret_key=decided.get("AWS_SECRET_ACCESS_KEY"))
    return Workspace(client, s3.bucket, RetrainSettings.from_env().cache_dir)


def connection_settings(conn_id: str = AWS_CONN_ID) -> dict[str, str]:
    """The settings the connection decides (those the task's environment does not set already), by
    variable name; logs which source decided, secrets as ***. Reads the environment, never writes it."""
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
    decided, kept = {}, []
    for name, value in wanted.items():
        if not value:
            continue
        if os.environ.get(name):
            kept.append(name)
            continue
        decided[name] = str(value)
    if "AWS_ACCESS_KEY_ID" not in decided or "AWS_SECRET_ACCESS_KEY" not in decided:
        # half a key pair is no key pair: boto3's chain (environment, profile, role) decides both
        decided.pop("AWS_ACCESS_KEY_ID", None)
        decided.pop("AWS_SECRET_ACCESS_KEY", None)
    shown = {name: "***" if name in _CREDENTIALS else value for name, value in decided.items()}
    # Which source decided is the first question when a task talks to the wrong S3; names only for secrets.
    log.info("S3 settings from connection %r: %s%s", conn_id, shown or "nothing",
             f"; kept from the environment (they override the connection): {', '.join(kept)}" if kept else "")
    return decided
