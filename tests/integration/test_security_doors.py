"""Issue 12's doors outside the stack: the web client's S3 key can only put raw uploads (moto with IAM
enforced), and the local registry refuses an unauthenticated push (a real docker-registry + dockerd).

Marker: docker (the registry test needs `make docker-up`); the IAM test needs only moto."""

from __future__ import annotations

import configparser
import os
import subprocess

import boto3
import botocore.exceptions
import pytest

from dkt_core.deploy.s3access import make_client_credentials, policy
from dkt_core.deploy.settings import DeploySettings
from tests.docker.fixtures import require_swarm
from tests.iam_moto import iam_moto_server

pytestmark = [pytest.mark.docker]
BUCKET = "dkt-iam-test"


@pytest.fixture
def iam_moto():
    """moto_server enforcing IAM (tests/iam_moto.py): (url, admin key id, admin secret)."""
    with iam_moto_server() as moto:
        yield moto.url, moto.admin_key, moto.admin_secret


def _client(service: str, url: str, key: str, secret: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret)


def test_client_credentials_can_only_put_raw_uploads(iam_moto, tmp_path):
    url, admin_key, admin_secret = iam_moto
    _client("s3", url, admin_key, admin_secret).create_bucket(Bucket=BUCKET)
    iam = _client("iam", url, admin_key, admin_secret)
    path = make_client_credentials(iam, BUCKET, tmp_path / "secrets" / "client-s3", "interactions/")
    assert path.stat().st_mode & 0o777 == 0o600
    creds = configparser.ConfigParser()
    creds.read(path)
    s3 = _client("s3", url, creds["default"]["aws_access_key_id"], creds["default"]["aws_secret_access_key"])

    s3.put_object(Bucket=BUCKET, Key="interactions/web/batch-1.csv", Body=b"userID\n")  # allowed
    admin_s3 = _client("s3", url, admin_key, admin_secret)
    admin_s3.put_object(Bucket=BUCKET, Key="models/champion.json", Body=b"{}")
    denied = {
        "read a raw upload": lambda: s3.get_object(Bucket=BUCKET, Key="interactions/web/batch-1.csv"),
        "delete a raw upload": lambda: s3.delete_object(Bucket=BUCKET, Key="interactions/web/batch-1.csv"),
        "put outside the raw prefix": lambda: s3.put_object(Bucket=BUCKET, Key="models/champion.json", Body=b"x"),
        "put at a prefix lookalike": lambda: s3.put_object(Bucket=BUCKET, Key="interactions-x/a.csv", Body=b"x"),
        "list the bucket": lambda: s3.list_objects_v2(Bucket=BUCKET),
        "read a model": lambda: s3.get_object(Bucket=BUCKET, Key="models/champion.json"),
        "create a bucket": lambda: s3.create_bucket(Bucket="dkt-other"),
    }
    for what, call in denied.items():
        with pytest.raises(botocore.exceptions.ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] in {"AccessDenied", "403"}, what
    assert admin_s3.get_object(Bucket=BUCKET, Key="models/champion.json")["Body"].read() == b"{}"
    # a second run rotates the key: the old one stops working
    old = creds["default"]["aws_access_key_id"]
    make_client_credentials(iam, BUCKET, path, "interactions/")
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName="dkt-webclient")["AccessKeyMetadata"]]
    assert old not in keys and len(keys) == 1


def test_policy_refuses_wildcards_in_its_values():
    assert policy("client-policy", "b-1", "interactions/")["Statement"][0]["Resource"] == \
        ["arn:aws:s3:::b-1/interactions/*"]
    for bucket, prefix in (("*", "interactions/"), ("b-1", "*"), ("b-1", "")):
        with pytest.raises(ValueError, match="IAM policy"):
            policy("client-policy", bucket, prefix)


def test_unauthenticated_registry_push_is_refused(tmp_path):
    """The local registry (make docker-up) requires a login: a docker without credentials cannot push, the
    raw API answers 401 to an anonymous upload, and the deployer's login (password on stdin) can push."""
    import requests

    client = require_swarm()
    settings = DeploySettings.from_env()
    assert settings.registry_password_file.is_file(), "make docker-up makes the registry password"
    assert settings.registry_password_file.stat().st_mode & 0o077 == 0
    r = requests.post(f"http://{settings.registry}/v2/dkt-anon/blobs/uploads/", timeout=5)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    image = f"{settings.registry}/dkt-anon-test:{tmp_path.name[-8:].lower()}"
    client.images.get(os.environ.get("DKT_BASE_IMAGE", "dkt-base:bookworm")).tag(image)
    anon = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "empty-docker-config")}  # no stored login
    (tmp_path / "empty-docker-config").mkdir()
    try:
        proc = subprocess.run(["docker", "push", image], capture_output=True, text=True, env=anon, timeout=120)
        assert proc.returncode != 0
        assert "no basic auth credentials" in proc.stderr or "unauthorized" in proc.stderr.lower(), proc.stderr
    finally:
        client.images.remove(image, noprune=True)
