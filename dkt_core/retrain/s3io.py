"""S3 reads/writes of frames, JSON and artifact tarballs, with a local cache of immutable objects."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from dkt_core.ingest.s3ops import get_bytes, get_json, put_bytes, put_json
from dkt_core.retrain.layout import parse_s3_uri


def read_parquet(client, uri: str) -> pd.DataFrame:
    bucket, key = parse_s3_uri(uri)
    got = get_bytes(client, bucket, key)
    if got is None:
        raise FileNotFoundError(f"{uri} does not exist; rerun the task that writes it")
    return pd.read_parquet(io.BytesIO(got[0]))


def write_parquet(client, bucket: str, key: str, frame: pd.DataFrame) -> str:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    put_bytes(client, bucket, key, buf.getvalue())
    return f"s3://{bucket}/{key}"


def read_json(client, bucket: str, key: str) -> dict[str, Any] | None:
    got = get_json(client, bucket, key)
    return got[0] if got else None


def write_json(client, bucket: str, key: str, doc: Any) -> str:
    put_json(client, bucket, key, doc)
    return f"s3://{bucket}/{key}"


def upload_artifact(client, bucket: str, key: str, artifact_dir: Path) -> str:
    """tar.gz the artifact directory (its contents at the archive root) and upload it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(artifact_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(artifact_dir)))
    put_bytes(client, bucket, key, buf.getvalue(), content_type="application/gzip")
    return f"s3://{bucket}/{key}"


def fetch_artifact(client, uri: str, cache_dir: Path, model_version: str) -> Path:
    """Local directory of the artifact at ``uri`` (cached per model version: artifacts are immutable)."""
    dest = cache_dir / "models" / model_version
    if (dest / "manifest.json").is_file():
        return dest
    bucket, key = parse_s3_uri(uri)
    got = get_bytes(client, bucket, key)
    if got is None:
        raise FileNotFoundError(f"artifact {uri} is missing; retrain or restore it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{model_version}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(got[0]), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")  # "data" refuses absolute paths and links outside
        if not (tmp / "manifest.json").is_file():
            raise ValueError(f"{uri} holds no manifest.json: not a dkt artifact")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)  # atomic: a concurrent reader never sees a half-extracted directory
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
