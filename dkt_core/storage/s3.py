"""S3 clients for ``S3Settings``, so the same code talks to AWS S3, MinIO or moto.

``S3Settings`` (endpoint, bucket, region: ``DKT_S3_ENDPOINT_URL``, ``DKT_S3_BUCKET``, ``AWS_DEFAULT_REGION``)
is declared in dkt_core/settings.py, the one settings surface, and re-exported here.
Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/..., profiles, instance roles) or are
handed to ``s3_client`` (an Airflow connection's); none are ever written in code or into the environment.
Object operations are ``dkt_core.storage.objects``.
"""

from __future__ import annotations

import boto3
from botocore.config import Config

from dkt_core.settings import S3Settings as S3Settings  # declared once in the settings surface (re-exported)
from dkt_core.storage.objects import list_keys as list_keys  # the one listing (re-exported)


def s3_client(settings: S3Settings, *, retries: int = 3, timeout_s: float = 10.0,
              access_key: str | None = None, secret_key: str | None = None):
    """A boto3 S3 client for ``settings`` (loaded at an edge: ``load(S3Settings)``). ``access_key``/``secret_key``:
    explicit credentials (e.g. from an Airflow connection); without them boto3's usual chain decides."""
    cfg = Config(
        retries={"max_attempts": retries, "mode": "standard"},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        s3={"addressing_style": "path"},
    )
    credentials = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key} if access_key else {}
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=cfg,
                        **credentials)


def ensure_bucket(client, bucket: str) -> None:
    """Create ``bucket`` if it does not exist (idempotent)."""
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)

