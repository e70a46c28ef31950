"""The errors that end an ingestion run, and the bucket check that names what to fix.

S3 itself (objects, conditional writes, listings) is ``dkt_core.storage.objects``.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from dkt_core.storage.objects import error_code, is_infrastructure_error


class IngestError(RuntimeError):
    """Base of the errors that end an ingestion run (the task fails; a retry or an operator fixes it)."""


class S3Unavailable(IngestError):
    """S3 is unreachable or throttling: nothing was committed; retry the run (Airflow does)."""


def require_bucket(client, bucket: str) -> None:
    """Fail with a message that says what to do when the bucket is missing."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        if is_infrastructure_error(err):
            raise
        raise IngestError(
            f"S3 bucket {bucket!r} is not reachable ({error_code(err) or err}); create it (make s3-seed) or set "
            "DKT_S3_BUCKET / DKT_S3_ENDPOINT_URL to the right bucket and endpoint"
        ) from err
