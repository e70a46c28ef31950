"""What one task works in: an S3 client, the platform bucket and a local cache directory.

Built once per task at the edge (the DAG task from the Airflow connection, the CLI from the environment)
and passed down, so no step re-reads settings or builds its own client, and nothing is written into the
process environment to carry credentials from one place to another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkt_core.storage.objects import s3_uri


@dataclass(frozen=True)
class Workspace:
    client: Any  # a boto3 S3 client (dkt_core.storage.s3.s3_client); it holds the credentials, nothing else does
    bucket: str
    cache_dir: Path  # local copies of immutable objects (artifacts)

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint this workspace talks to, for messages ("AWS" for the default)."""
        return getattr(getattr(self.client, "meta", None), "endpoint_url", None) or "AWS"
