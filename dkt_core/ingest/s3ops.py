"""Small S3 helpers the ingestion needs beyond dkt_core.storage.s3: conditional writes (the commit
and lock primitives), JSON objects, and ETag normalisation.

Conditional writes (``If-None-Match: *`` / ``If-Match: <etag>``) are supported by AWS S3 since 2024,
by MinIO and by moto; they turn "create the manifest entry" into an atomic compare-and-set.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError


class PreconditionFailed(Exception):
    """A conditional write lost: the object already exists / changed since it was read."""


def norm_etag(etag: str) -> str:
    return etag.strip('"')


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def put_bytes(
    client,
    bucket: str,
    key: str,
    body: bytes,
    *,
    if_absent: bool = False,
    if_match: str | None = None,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> str:
    """Write ``body`` (integrity-checked by S3 through Content-MD5); returns the new ETag.

    ``if_absent``: only create; ``if_match``: only replace that exact version. Losing either condition
    raises PreconditionFailed.
    """
    kwargs: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": body,
        "ContentType": content_type,
        "ContentMD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        "Metadata": metadata or {},
    }
    if if_absent:
        kwargs["IfNoneMatch"] = "*"
    if if_match:
        kwargs["IfMatch"] = if_match
    try:
        return norm_etag(client.put_object(**kwargs)["ETag"])
    except ClientError as err:
        if _code(err) in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
            raise PreconditionFailed(f"conditional write of s3://{bucket}/{key} lost") from err
        raise


def get_bytes(client, bucket: str, key: str) -> tuple[bytes, str] | None:
    """(body, etag) of ``key``, or None when it does not exist."""
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _code(err) in {"NoSuchKey", "404"}:
            return None
        raise
    return resp["Body"].read(), norm_etag(resp["ETag"])


def put_json(client, bucket: str, key: str, doc: Any, **kwargs: Any) -> str:
    body = json.dumps(doc, indent=1, sort_keys=True, default=str).encode()
    return put_bytes(client, bucket, key, body, content_type="application/json", **kwargs)


def get_json(client, bucket: str, key: str) -> tuple[Any, str] | None:
    got = get_bytes(client, bucket, key)
    if got is None:
        return None
    return json.loads(got[0]), got[1]


def list_objects(client, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Key, ETag and size of every object under ``prefix``, sorted by key (paginated)."""
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out.append({"key": obj["Key"], "etag": norm_etag(obj["ETag"]), "size": int(obj["Size"])})
    return sorted(out, key=lambda o: o["key"])


def require_bucket(client, bucket: str) -> None:
    """Fail with a message that says what to do when the bucket is missing."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        raise RuntimeError(
            f"S3 bucket {bucket!r} is not reachable ({_code(err) or err}); create it (make s3-seed) or set "
            "DKT_S3_BUCKET / DKT_S3_ENDPOINT_URL to the right bucket and endpoint"
        ) from err
