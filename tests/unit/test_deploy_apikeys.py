"""The stack's key secrets (dkt_core/deploy/apikeys.py) without Docker: what a first deploy hands compose.yaml
is file paths and content hashes only (never a key), the deployer's own keys are made once and kept valid,
and the secret names follow the content."""

from __future__ import annotations

import hashlib
import stat

from dkt_core.deploy.apikeys import (
    CLIENT_KEY,
    KEYS_SECRET,
    SMOKE_KEY,
    content_name,
    key_file,
    smoke_key,
    stack_key_env,
)
from dkt_core.serving.apikeys import KeySet, create_key, revoke_key


def test_stack_env_names_files_and_hashes_never_keys(tmp_path):
    keys_file = tmp_path / "secrets" / "api_keys.json"
    create_key(keys_file, "teacher-app")
    env = stack_key_env(keys_file, with_client=True)
    smoke, client = key_file(keys_file, SMOKE_KEY).read_text().strip(), key_file(keys_file, CLIENT_KEY).read_text().strip()
    keys = KeySet.load(keys_file)
    assert keys.verify(smoke).name == SMOKE_KEY and keys.verify(client).name == CLIENT_KEY
    assert env == {
        "DKT_API_KEYS_SRC": str(keys_file.resolve()),
        "DKT_API_KEYS_ID": hashlib.sha256(keys_file.read_bytes()).hexdigest()[:8],
        "DKT_CLIENT_API_KEY_SRC": str(key_file(keys_file, CLIENT_KEY).resolve()),
        "DKT_CLIENT_API_KEY_ID": hashlib.sha256(key_file(keys_file, CLIENT_KEY).read_bytes()).hexdigest()[:8],
    }
    assert not any(smoke in v or client in v for v in env.values())
    for held in (key_file(keys_file, SMOKE_KEY), key_file(keys_file, CLIENT_KEY)):
        assert stat.S_IMODE(held.stat().st_mode) == 0o600
    assert stack_key_env(keys_file, with_client=True) == env  # idempotent: same keys, same secret names


def test_a_revoked_smoke_key_is_replaced_and_the_secret_name_follows_the_content(tmp_path):
    keys_file = tmp_path / "api_keys.json"
    first = smoke_key(keys_file)
    name = content_name(KEYS_SECRET, keys_file.read_bytes())
    assert name.startswith("dkt_api_keys_") and len(name) == len("dkt_api_keys_") + 8
    revoke_key(keys_file, SMOKE_KEY)
    second = smoke_key(keys_file)
    assert second != first and KeySet.load(keys_file).verify(second).error is None
    assert content_name(KEYS_SECRET, keys_file.read_bytes()) != name
    assert "DKT_CLIENT_API_KEY_SRC" not in stack_key_env(keys_file, with_client=False)
