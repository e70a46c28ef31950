"""A moto server that enforces IAM (issue 12 item 4): the tests of deploy/iam/*.json run the roles' real code
with credentials limited by those policies, and moto refuses what a policy does not allow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

from devtools.ports import free_port, wait_for_port

ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class IamMoto:
    url: str
    admin_key: str
    admin_secret: str

    def client(self, service: str, key: str | None = None, secret: str | None = None):
        """A boto3 client of this server with the given key pair (default: the admin's)."""
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key or self.admin_key, aws_secret_access_key=secret or self.admin_secret)

    def user(self, name: str, policies: dict[str, dict]) -> tuple[str, str]:
        """Create IAM user ``name`` with these inline policies; return its (access key id, secret key)."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        for policy_name, doc in policies.items():
            iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(doc))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


@contextmanager
def iam_moto_server() -> Iterator[IamMoto]:
    """moto_server on loopback enforcing IAM after its first 3 (unauthenticated) calls, which make the admin."""
    port = free_port()
    exe = str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
        iam.create_user(UserName="deployer")  # the 3 unauthenticated calls
        iam.put_user_policy(UserName="deployer", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="deployer")["AccessKey"]
        yield IamMoto(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.kill()
        proc.wait(timeout=10)
