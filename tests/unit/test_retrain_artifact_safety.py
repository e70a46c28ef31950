"""Nothing read from the bucket becomes a path: model versions are checked, cache paths stay under
their root, and an artifact is loaded only when its bytes have the sha256 recorded when it was written."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from dkt_core.ingest.layout import CHAMPION_KEY
from dkt_core.retrain.artifacts import ArtifactIntegrityError, fetch_artifact, upload_artifact
from dkt_core.retrain.champion import champion_dir, read_champion
from dkt_core.storage.paths import UnsafePath, safe_join
from dkt_core.training.versions import check_model_version

VERSION = "20250101-120000-0123abcd"


@pytest.fixture
def s3(s3_env):
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client, s3_env.bucket


def _artifact_dir(root: Path) -> Path:
    d = root / "artifact"
    (d / "models").mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"model_version": VERSION}))
    (d / "models" / "weights.txt").write_text("w" * 100)
    return d


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_safe_join_keeps_paths_under_the_root(tmp_path):
    assert safe_join(tmp_path, "models", VERSION) == (tmp_path / "models" / VERSION).resolve()
    for bad in ("../../etc/x", "/etc/passwd", "..", "", "a/../../b", "x\x00y", "."):
        with pytest.raises(UnsafePath):
            safe_join(tmp_path, bad)
    assert safe_join(tmp_path, "models", "a/../b") == (tmp_path / "models" / "b").resolve()  # still inside
    (tmp_path / "link").symlink_to("/etc")  # a symlink inside the root that leads out is refused too
    with pytest.raises(UnsafePath, match="leads outside"):
        safe_join(tmp_path, "link", "passwd")


@pytest.mark.parametrize("value", ["../../etc/x", "20250101-120000-0123abcd/../x", "m1", "", None, 7,
                                   "20250101-120000-0123ABCD", "20250101-120000-0123abcd\n"])
def test_model_version_pattern(value):
    with pytest.raises(ValueError, match="not a model version"):
        check_model_version(value)
    assert check_model_version(VERSION) == VERSION


def test_traversal_in_champion_json_is_refused_and_nothing_is_written_outside_the_cache(s3, tmp_path):
    client, bucket = s3
    uri, sha = upload_artifact(client, bucket, f"models/{VERSION}/artifact.tar.gz", _artifact_dir(tmp_path / "src"))
    evil = {"model_version": "../../etc/x", "artifact_uri": uri, "artifact_sha256": sha, "data_version": "v=000001"}
    client.put_object(Bucket=bucket, Key=CHAMPION_KEY, Body=json.dumps(evil).encode())
    work = tmp_path / "work"
    cache = work / "a" / "b" / "cache"
    cache.mkdir(parents=True)
    with pytest.raises(ValueError, match=r"s3://dkt-test/models/champion.json model_version '\.\./\.\./etc/x' is not "
                                         "a model version"):
        read_champion(client, bucket)
    with pytest.raises(ValueError, match="not a model version"):  # even a caller that skipped read_champion
        champion_dir(client, evil, cache)
    assert _files_under(work) == {work / "a", work / "a" / "b", cache}  # nothing written anywhere


def test_artifact_uri_must_be_the_versions_own_key(s3, tmp_path):
    client, bucket = s3
    uri, sha = upload_artifact(client, bucket, f"models/{VERSION}/artifact.tar.gz", _artifact_dir(tmp_path / "src"))
    other = "20250202-120000-89abcdef"
    with pytest.raises(ValueError, match=f"does not point at models/{other}/artifact.tar.gz"):
        fetch_artifact(client, uri, tmp_path / "cache", other, sha256=sha)


def test_artifact_round_trip_records_and_checks_the_sha256(s3, tmp_path):
    client, bucket = s3
    uri, sha = upload_artifact(client, bucket, f"models/{VERSION}/artifact.tar.gz", _artifact_dir(tmp_path / "src"))
    head = client.head_object(Bucket=bucket, Key=f"models/{VERSION}/artifact.tar.gz")
    assert head["Metadata"]["sha256"] == sha
    local = fetch_artifact(client, uri, tmp_path / "cache", VERSION, sha256=sha)
    assert local == (tmp_path / "cache" / "models" / VERSION).resolve()
    assert (local / "models" / "weights.txt").read_text() == "w" * 100


@pytest.mark.parametrize("keep_metadata", [False, True])
def test_tampered_artifact_is_refused_naming_both_digests(s3, tmp_path, keep_metadata):
    client, bucket = s3
    key = f"models/{VERSION}/artifact.tar.gz"
    uri, sha = upload_artifact(client, bucket, key, _artifact_dir(tmp_path / "src"))
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    tampered = body[:-8] + bytes(8)
    import hashlib

    actual = hashlib.sha256(tampered).hexdigest()
    # a writer that can replace the object may also copy its metadata: the recorded digest still decides
    client.put_object(Bucket=bucket, Key=key, Body=tampered, Metadata={"sha256": sha} if keep_metadata else {})
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactIntegrityError) as err:
        fetch_artifact(client, uri, cache, VERSION, sha256=sha)
    assert f"has sha256 {actual}, expected {sha}" in str(err.value)
    assert not (cache / "models" / VERSION).exists()


def test_object_metadata_alone_is_checked_and_an_unrecorded_artifact_is_refused(s3, tmp_path):
    client, bucket = s3
    key = f"models/{VERSION}/artifact.tar.gz"
    uri, sha = upload_artifact(client, bucket, key, _artifact_dir(tmp_path / "src"))
    assert fetch_artifact(client, uri, tmp_path / "c1", VERSION).is_dir()  # the object's metadata is the record
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body)  # same bytes, metadata dropped: nothing to check with
    with pytest.raises(ArtifactIntegrityError, match="no recorded sha256"):
        fetch_artifact(client, uri, tmp_path / "c2", VERSION)


def test_a_cached_copy_from_other_bytes_is_replaced(s3, tmp_path):
    client, bucket = s3
    uri, sha = upload_artifact(client, bucket, f"models/{VERSION}/artifact.tar.gz", _artifact_dir(tmp_path / "src"))
    cache = tmp_path / "cache"
    local = fetch_artifact(client, uri, cache, VERSION, sha256=sha)
    (local / "models" / "weights.txt").write_text("changed")
    (cache / "models" / f"{VERSION}.sha256").write_text("0" * 64)  # the copy came from other bytes
    again = fetch_artifact(client, uri, cache, VERSION, sha256=sha)
    assert (again / "models" / "weights.txt").read_text() == "w" * 100


def test_tar_members_escaping_the_target_are_refused(s3, tmp_path):
    import hashlib

    client, bucket = s3
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("manifest.json", b"{}"), ("../../escaped.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    key = f"models/{VERSION}/artifact.tar.gz"
    client.put_object(Bucket=bucket, Key=key, Body=body)
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(tarfile.OutsideDestinationError):
        fetch_artifact(client, f"s3://{bucket}/{key}", cache, VERSION, sha256=hashlib.sha256(body).hexdigest())
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (cache / "models" / VERSION).exists()
