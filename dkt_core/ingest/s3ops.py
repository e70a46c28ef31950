"""Small S3 helpers the ingestion needs beyond dkt_core.storage.s3: conditional writes (the commit
and lock primitives), JSON objects, server-side copies, ETag normalisation, and the line between an
infrastructure failure (S3 unreachable or throttling: the task fails so Airflow retries it) and
anything else.

Conditional writes (``If-None-Match: *`` / ``If-Match: <etag>``) are supported by AWS S3 since 2024,
by MinIO and by moto; they turn "create the manifest entry" into an atomic compare-and-set.
``CopySourceIfMatch`` is honoured by AWS S3 and MinIO; moto 5 ignores it (tests cannot race a copy).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

# Error codes / statuses meaning "S3 is unwell right now", not "this request is wrong".
_INFRA_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "503", "500", "502",
    "504", "429",
}


class PreconditionFailed(Exception):
    """A conditional write lost: the object already exists / changed since it was read."""


class IngestError(RuntimeError):
    """Base of the errors that end an ingestion run (the task fails; a retry or an operator fixes it)."""


class S3Unavailable(IngestError):
    """S3 is unreachable or throttling: nothing was committed; retry the run (Airflow does)."""


def is_infrastructure_error(err: BaseException) -> bool:
    """True for S3 connection failures, timeouts, truncated transfers, throttling and 5xx answers."""
    if isinstance(err, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return _code(err) in _INFRA_CODES or status >= 500 or status == 429
    return False


def is_s3_error(err: BaseException) -> bool:
    """Raised by botocore (any S3 call or body read), as opposed to parsing/validation errors."""
    return isinstance(err, (BotoCoreError, ClientError))


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


def is_missing(err: ClientError) -> bool:
    return _code(err) in {"NoSuchKey", "404", "NotFound"}


def is_precondition(err: ClientError) -> bool:
    return _code(err) in {"PreconditionFailed", "412"}


def copy_object(client, bucket: str, src: str, dst: str, *, src_etag: str,
                metadata: dict[str, str] | None = None) -> str | None:
    """Server-side copy of ``src`` (only the version ``src_etag``) to ``dst``; None when ``src`` vanished or
    changed since it was listed (a later run sees its new ETag)."""
    try:
        resp = client.copy_object(
            Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src}, CopySourceIfMatch=f'"{src_etag}"',
            MetadataDirective="REPLACE", Metadata=metadata or {},
        )
    except ClientError as err:
        if is_missing(err) or is_precondition(err):
            return None
        raise
    return norm_etag(resp["CopyObjectResult"]["ETag"])


def delete_if_match(client, bucket: str, key: str, etag: str) -> bool:
    """Delete ``key`` only if it is still the version ``etag`` (conditional delete); False otherwise."""
    try:
        client.delete_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    except ClientError as err:
        if is_missing(err) or is_precondition(err):
            return False
        raise
    return True


MAX_JSON_BYTES = 64 * 2**20  # manifest records, index, lock, claims: far smaller in practice


def get_bytes(client, bucket: str, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
    """(body, etag) of ``key``, or None when it does not exist. With ``max_bytes``, a larger object
    raises ValueError naming it instead of being read."""
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if is_missing(err):
            return None
        raise
    if max_bytes is not None and int(resp.get("ContentLength") or 0) > max_bytes:
        resp["Body"].close()
        raise ValueError(f"s3://{bucket}/{key} is {resp['ContentLength']} bytes, more than the {max_bytes} "
                         "expected of it; restore or remove it")
    return resp["Body"].read(), norm_etag(resp["ETag"])


def put_json(client, bucket: str, key: str, doc: Any, **kwargs: Any) -> str:
    body = json.dumps(doc, indent=1, sort_keys=True, default=str).encode()
    return put_bytes(client, bucket, key, body, content_type="application/json", **kwargs)


def get_json(client, bucket: str, key: str) -> tuple[Any, str] | None:
    """(document, etag) of a JSON object the platform wrote, or None when absent. A body that is not
    JSON raises ValueError naming the object (someone edited or replaced it)."""
    got = get_bytes(client, bucket, key, max_bytes=MAX_JSON_BYTES)
    if got is None:
        return None
    try:
        return json.loads(got[0]), got[1]
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"s3://{bucket}/{key} is not valid JSON ({err}); restore or remove it") from None


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
        if is_infrastructure_error(err):
            raise
        raise IngestError(
            f"S3 bucket {bucket!r} is not reachable ({_code(err) or err}); create it (make s3-seed) or set "
            "DKT_S3_BUCKET / DKT_S3_ENDPOINT_URL to the right bucket and endpoint"
        ) from err
