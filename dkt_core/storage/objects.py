"""Objects in the platform bucket: the one S3 layer every stage uses (ingest, retrain, client, CLI).

Reads and writes of bytes and JSON, conditional writes (``If-None-Match: *`` / ``If-Match: <etag>``:
supported by AWS S3 since 2024, by MinIO and by moto) and the one compare-and-set loop built on them,
server-side copies, conditional deletes, the one listing, frames as Parquet, and the line between an
infrastructure failure (S3 unreachable or throttling: a task fails so Airflow retries it) and anything
else. ``CopySourceIfMatch`` is honoured by AWS S3 and MinIO; moto 5 ignores it (tests cannot race a copy).
The client comes from ``dkt_core.storage.s3.s3_client``; a retraining task carries it in a
``dkt_core.storage.workspace.Workspace``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
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



def is_infrastructure_error(err: BaseException) -> bool:
    """True for S3 connection failures, timeouts, truncated transfers, throttling and 5xx answers."""
    if isinstance(err, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return error_code(err) in _INFRA_CODES or status >= 500 or status == 429
    return False


def is_s3_error(err: BaseException) -> bool:
    """Raised by botocore (any S3 call or body read), as opposed to parsing/validation errors."""
    return isinstance(err, (BotoCoreError, ClientError))


def norm_etag(etag: str) -> str:
    return etag.strip('"')


def error_code(err: ClientError) -> str:
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
        if error_code(err) in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
            raise PreconditionFailed(f"conditional write of s3://{bucket}/{key} lost") from err
        raise


def is_missing(err: ClientError) -> bool:
    return error_code(err) in {"NoSuchKey", "404", "NotFound"}


def is_precondition(err: ClientError) -> bool:
    return error_code(err) in {"PreconditionFailed", "412"}


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
    """Key, ETag, size and last-modified time (aware datetime) of every object under ``prefix``, sorted by
    key (paginated)."""
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out.append({"key": obj["Key"], "etag": norm_etag(obj["ETag"]), "size": int(obj["Size"]),
                        "modified": obj["LastModified"]})
    return sorted(out, key=lambda o: o["key"])


def list_subprefixes(client, bucket: str, prefix: str) -> list[str]:
    """The '/'-delimited common prefixes directly under ``prefix`` (``runs/a/``, ``runs/b/``), sorted."""
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return sorted(out)


def delete_keys(client, bucket: str, keys: list[str]) -> int:
    """Delete ``keys`` in order, one request each; a key already gone counts as deleted (S3 answers 204 the
    same), so a retry is a no-op. One DeleteObject per key rather than DeleteObjects: a policy that grants
    s3:DeleteObject on a prefix only is then evaluated per key everywhere (moto checks a batch against the
    bucket), and the callers delete a handful of objects. Returns how many were asked for."""
    for key in keys:
        client.delete_object(Bucket=bucket, Key=key)
    return len(keys)


class ConflictExhausted(RuntimeError):
    """A compare-and-set kept losing to other writers for all its attempts."""


def compare_and_set(read: Callable[[], tuple[Any, str | None] | None], write: Callable[..., str],
                    change: Callable[[Any], Any], *, what: str, attempts: int = 5, wait_s: float = 0.2) -> Any:
    """The one read-modify-write loop: ``read()`` -> (value, etag) or None when absent; ``change(value)``
    -> the new value, or None when nothing needs writing (the current value is returned); ``write(new,
    if_absent=True)`` when absent, else ``write(new, if_match=etag)``. A lost condition re-reads and tries
    again (``wait_s`` apart); after ``attempts`` losses ConflictExhausted names ``what``. Returns the value
    now stored."""
    for attempt in range(attempts):
        got = read()
        current, etag = got if got is not None else (None, None)
        new = change(current)
        if new is None:
            return current
        try:
            if etag is None:
                write(new, if_absent=True)
            else:
                write(new, if_match=etag)
            return new
        except PreconditionFailed:
            if attempt + 1 < attempts:
                time.sleep(wait_s)  # someone else wrote meanwhile: re-read and merge
    raise ConflictExhausted(f"{what} kept changing under us; retry the task")


def update_json(client, bucket: str, key: str, change: Callable[[Any], Any], *, attempts: int = 5,
                wait_s: float = 0.2) -> Any:
    """``compare_and_set`` of the JSON object ``key`` (see there for ``change``)."""
    return compare_and_set(lambda: get_json(client, bucket, key),
                           lambda doc, **cond: put_json(client, bucket, key, doc, **cond),
                           change, what=s3_uri(bucket, key), attempts=attempts, wait_s=wait_s)


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    if not isinstance(uri, str) or not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def read_parquet(client, uri: str) -> pd.DataFrame:
    """The frame stored at ``uri`` (FileNotFoundError naming it when absent)."""
    bucket, key = parse_s3_uri(uri)
    got = get_bytes(client, bucket, key)
    if got is None:
        raise FileNotFoundError(f"{uri} does not exist; rerun the task that writes it")
    return pd.read_parquet(io.BytesIO(got[0]))


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def write_parquet(client, bucket: str, key: str, frame: pd.DataFrame, **conditions: Any) -> str:
    """Store ``frame`` as Parquet at ``key``; returns its URI."""
    put_bytes(client, bucket, key, parquet_bytes(frame), **conditions)
    return s3_uri(bucket, key)


def read_json(client, bucket: str, key: str) -> Any:
    """The JSON document at ``key``, or None when absent."""
    got = get_json(client, bucket, key)
    return got[0] if got else None


def write_json(client, bucket: str, key: str, doc: Any) -> str:
    put_json(client, bucket, key, doc)
    return s3_uri(bucket, key)


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    """All object keys under ``prefix``, sorted (``list_objects`` without ETags and sizes)."""
    return [o["key"] for o in list_objects(client, bucket, prefix)]
