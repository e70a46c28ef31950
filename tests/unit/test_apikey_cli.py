"""`dkt api-key create|revoke|list` (what `make api-key` / `make api-key-revoke` run) without a Swarm stack:
the key is printed on the last line and stored nowhere but as a hash in a 0600 file, the command says that
only the file changed, a revoked key is refused by the key set, and `list` shows no key or hash."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from dkt_core.serving.apikeys import KeySet


def _dkt(tmp_path, *args: str) -> subprocess.CompletedProcess:
    # a stack name no one deploys: the command must find no service to roll out
    env = {**os.environ, "DKT_HOME": str(tmp_path), "DKT_STACK": f"nostack{os.getpid()}"}
    env.pop("DKT_API_KEYS_FILE", None)
    return subprocess.run([sys.executable, "-m", "dkt_core.cli", "api-key", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_create_prints_the_key_last_and_stores_its_hash(tmp_path):
    proc = _dkt(tmp_path, "create", "teacher-app")
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip().splitlines()[-1]
    store = tmp_path / "secrets" / "api_keys.json"
    assert KeySet.load(store).verify(key).name == "teacher-app"
    assert key not in store.read_text() and stat.S_IMODE(store.stat().st_mode) == 0o600
    assert "only" in proc.stderr and "was updated" in proc.stderr  # no stack: the file alone changed
    assert key not in proc.stderr

    again = _dkt(tmp_path, "create", "teacher-app")
    assert again.returncode == 2 and "revoke it first" in again.stderr and not again.stdout.strip()

    revoked = _dkt(tmp_path, "revoke", "teacher-app")
    assert revoked.returncode == 0, revoked.stderr
    assert KeySet.load(store).verify(key).error.startswith("API key revoked at")

    listed = _dkt(tmp_path, "list")
    assert json.loads(listed.stdout)["teacher-app"]["revoked_at"]
    assert key not in listed.stdout and KeySet.load(store).records["teacher-app"].sha256 not in listed.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("revoke", "nobody"), "no API key named 'nobody'"),
    (("create", "Bad Name"), "not allowed"),
])
def test_usage_errors_are_one_sentence(tmp_path, args, message):
    proc = _dkt(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
