"""Least-privilege S3 credentials (issue 12 item 4) and the registry login (item 5) of the deployer.

The web client gets its own IAM user whose only right is ``s3:PutObject`` under the raw prefix
(deploy/iam/client-policy.json, rendered with the bucket and prefix). Its access key is written once as an
AWS shared-credentials file (0600, ``DKT_CLIENT_S3_CREDENTIALS_FILE``) and reaches the client container as a
content-named Docker secret read through ``AWS_SHARED_CREDENTIALS_FILE``: never an environment variable.

The deployer logs in to the registry with ``docker login --password-stdin`` (the password is read from its
0600 file and never appears in argv, the environment or a log).
"""

from __future__ import annotations

import configparser
import io
import json
import os
import subprocess
from pathlib import Path

from dkt_core.deploy.apikeys import content_id
from dkt_core.deploy.images import ImageError
from dkt_core.deploy.settings import REPO_ROOT, DeploySettings

IAM_DIR = REPO_ROOT / "deploy" / "iam"
CLIENT_USER = "dkt-webclient"
CLIENT_POLICY = "dkt-webclient-put-raw"


def policy(name: str, bucket: str, raw_prefix: str = "interactions/") -> dict:
    """deploy/iam/<name>.json with ``${bucket}`` and ``${raw_prefix}`` filled in (checked: no wildcard
    smuggled in through the values)."""
    for what, value in (("bucket", bucket), ("raw prefix", raw_prefix)):
        if not value or any(c in value for c in '*?"$\\') or value.startswith("/"):
            raise ValueError(f"{what} {value!r} cannot go into an IAM policy: no wildcards, quotes or leading '/'")
    text = (IAM_DIR / f"{name}.json").read_text()
    return json.loads(text.replace("${bucket}", bucket).replace("${raw_prefix}", raw_prefix))


def write_credentials(path: Path, access_key: str, secret_key: str) -> Path:
    """An AWS shared-credentials file (profile ``default``), created 0600 and replaced atomically."""
    cfg = configparser.ConfigParser()
    cfg["default"] = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    buf = io.StringIO()
    cfg.write(buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)
    return path


def make_client_credentials(iam, bucket: str, path: Path, raw_prefix: str = "interactions/",
                            user: str = CLIENT_USER) -> Path:
    """Create (idempotently) the client's IAM user with the client policy, make it a new access key and
    write the credentials file. ``iam``: a boto3 IAM client with the deployer's (admin) credentials. Older
    keys of the user are deleted, so a re-run rotates the key."""
    try:
        iam.create_user(UserName=user)
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    iam.put_user_policy(UserName=user, PolicyName=CLIENT_POLICY,
                        PolicyDocument=json.dumps(policy("client-policy", bucket, raw_prefix)))
    old = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    write_credentials(path, key["AccessKeyId"], key["SecretAccessKey"])
    for key_id in old:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    return path


def client_s3_env(credentials: Path) -> dict[str, str]:
    """compose.yaml's variables for the client's S3 credentials secret (a path and a content hash only)."""
    if not credentials.is_file():
        return {}
    if credentials.stat().st_mode & 0o077:
        credentials.chmod(0o600)
    return {"DKT_CLIENT_S3_CREDENTIALS_SRC": str(credentials.resolve()),
            "DKT_CLIENT_S3_CREDENTIALS_ID": content_id(credentials.read_bytes())}


def registry_login(settings: DeploySettings) -> bool:
    """``docker login`` to the registry with the password file (stdin only). False when there is no password
    file (a registry without logins, or one the operator logged in to already)."""
    pw = settings.registry_password_file
    if not settings.registry or not pw.is_file():
        return False
    with pw.open("rb") as stdin:
        proc = subprocess.run(["docker", "login", "-u", settings.registry_user, "--password-stdin", settings.registry],
                              stdin=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"docker login {settings.registry} as {settings.registry_user} failed: "
                         f"{proc.stderr.strip()[:300]} (password file {pw}; make registry-up makes it)")
    return True
