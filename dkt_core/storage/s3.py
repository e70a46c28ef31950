"""S3 access configured from the environment, so the same code talks to AWS S3, MinIO or moto.

Settings (environment variables):
- ``DKT_S3_ENDPOINT_URL``: endpoint of an S3-compatible server (empty = AWS S3).
- ``DKT_S3_BUCKET``: the platform's bucket (default ``dkt-platform``).
Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/..., profiles, instance roles); none are
ever written in code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    bucket: str = "dkt-platform"
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> S3Settings:
        return cls(
            endpoint_url=os.environ.get("DKT_S3_ENDPOINT_URL") or None,
            bucket=os.environ.get("DKT_S3_BUCKET", "dkt-platform"),
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )


def s3_client(settings: S3Settings | None = None, *, retries: int = 3, timeout_s: float = 10.0):
    """A boto3 S3 client for ``settings`` (default: from the environment)."""
    settings = settings or S3Settings.from_env()
    cfg = Config(
        retries={"max_attempts": retries, "mode": "standard"},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=cfg)


def ensure_bucket(client, bucket: str) -> None:
    """Create ``bucket`` if it does not exist (idempotent)."""
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    """All object keys under ``prefix``, sorted (paginates past 1,000 keys)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)
