"""Trained artifacts in the bucket: upload as a tarball with its sha256, fetch into a local cache only after
the bytes, the key and the version checked out (immutable objects: cached per model version).

Objects themselves (bytes, JSON, frames) are ``dkt_core.storage.objects``.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from dkt_core.ingest.layout import ARTIFACT_FILE, model_key
from dkt_core.storage.objects import get_bytes, parse_s3_uri, put_bytes
from dkt_core.storage.paths import safe_join
from dkt_core.training.versions import check_model_version


class ArtifactIntegrityError(ValueError):
    """An artifact's bytes are not the ones recorded when it was written (tampered, truncated, replaced)."""


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def upload_artifact(client, bucket: str, key: str, artifact_dir: Path) -> tuple[str, str]:
    """tar.gz the artifact directory (its contents at the archive root) and upload it.

    Returns (URI, sha256 of the tarball). The sha256 is also stored as the object's ``sha256`` metadata;
    callers record it (run record, champion.json) so a later load can check the bytes it gets.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(artifact_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(artifact_dir)))
    body = buf.getvalue()
    digest = sha256_hex(body)
    put_bytes(client, bucket, key, body, content_type="application/gzip", metadata={"sha256": digest})
    return f"s3://{bucket}/{key}", digest


def _object_sha256(client, bucket: str, key: str) -> str | None:
    meta = client.head_object(Bucket=bucket, Key=key).get("Metadata") or {}
    return meta.get("sha256")


def artifact_cache_dir(cache_dir: Path, model_version: str) -> Path:
    """``cache_dir/models/<model_version>``, the version checked and the path kept under the cache."""
    check_model_version(model_version)
    return safe_join(cache_dir, "models", model_version)


def check_artifact_uri(uri: str, model_version: str) -> tuple[str, str]:
    """(bucket, key) of ``uri`` if it is exactly ``models/<model_version>/artifact.tar.gz``."""
    bucket, key = parse_s3_uri(uri)
    want = model_key(model_version, ARTIFACT_FILE)
    if key != want:
        raise ValueError(f"artifact URI {uri!r} does not point at {want} of model {model_version}; "
                         "refusing it (fix the record it was read from)")
    return bucket, key


def verify_sha256(body: bytes, expected: str | None, uri: str, recorded: str | None = None) -> str:
    """The sha256 of ``body``; ArtifactIntegrityError unless it equals every recorded digest."""
    actual = sha256_hex(body)
    wanted = {d for d in (expected, recorded) if d}
    if not wanted:
        raise ArtifactIntegrityError(f"{uri} carries no recorded sha256 (object metadata or run record): "
                                     "refusing to load an artifact that cannot be checked; retrain it")
    for want in sorted(wanted):
        if actual != want:
            raise ArtifactIntegrityError(f"{uri} has sha256 {actual}, expected {want} (recorded when it was "
                                         "written): the artifact was changed or corrupted; refusing to load it")
    return actual


def fetch_artifact(client, uri: str, cache_dir: Path, model_version: str, *, sha256: str | None = None) -> Path:
    """Local directory of the artifact at ``uri`` (cached per model version: artifacts are immutable).

    The version must match the model-version pattern, the URI must be that version's artifact key and the
    downloaded bytes must have the sha256 recorded when the artifact was written (``sha256``, from the run
    record or champion.json, and the object's metadata): only then is the tarball extracted, with the
    "data" filter (no absolute paths, no ``..``, no links leading outside).
    """
    dest = artifact_cache_dir(cache_dir, model_version)
    bucket, key = check_artifact_uri(uri, model_version)
    marker = dest.with_name(dest.name + ".sha256")  # which tarball the cached copy came from
    if (dest / "manifest.json").is_file() and marker.is_file():
        if sha256 is None or marker.read_text().strip() == sha256:
            return dest
    got = get_bytes(client, bucket, key)
    if got is None:
        raise FileNotFoundError(f"artifact {uri} is missing; retrain or restore it")
    digest = verify_sha256(got[0], sha256, uri, _object_sha256(client, bucket, key))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{model_version}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(got[0]), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")  # "data" refuses absolute paths and links outside
        if not (tmp / "manifest.json").is_file():
            raise ValueError(f"{uri} holds no manifest.json: not a dkt artifact")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)  # atomic: a concurrent reader never sees a half-extracted directory
        marker.write_text(digest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def cache_local_artifact(artifact_dir: Path, cache_dir: Path, model_version: str, sha256: str) -> Path:
    """Keep a local copy of an artifact just uploaded (later tasks on this worker skip the download)."""
    dest = artifact_cache_dir(cache_dir, model_version)
    if not dest.exists():
        shutil.copytree(artifact_dir, dest)
    dest.with_name(dest.name + ".sha256").write_text(sha256)
    return dest
