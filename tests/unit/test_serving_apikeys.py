"""The API key store (dkt_core/serving/apikeys.py): keys are random and unnamed, only their hashes are stored
in a 0600 file, revocation is recorded, a presented key is verified against every hash, and a malformed file
is named instead of trusted."""

from __future__ import annotations

import json
import stat
import threading

import pytest

from dkt_core.serving.apikeys import (
    KEY_PREFIX,
    KeyFileError,
    KeySet,
    create_key,
    ensure_key,
    hash_key,
    read_records,
    revoke_key,
)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_stores_only_the_hash_in_a_0600_file(tmp_path):
    store = tmp_path / "secrets" / "api_keys.json"
    key = create_key(store, "webclient")
    other = create_key(store, "teacher-app")
    assert key.startswith(KEY_PREFIX) and len(key) >= 40 and key != other
    assert "webclient" not in key  # the key does not carry its name
    text = store.read_text()
    assert key not in text and other not in text  # hash-only storage
    assert key[len(KEY_PREFIX):] not in text
    doc = json.loads(text)["keys"]
    assert doc["webclient"]["sha256"] == hash_key(key) and doc["webclient"]["revoked_at"] is None
    assert doc["webclient"]["created_at"].endswith("Z")
    assert _mode(store) == 0o600
    assert not list(store.parent.glob("*.tmp"))


def test_verify_accepts_active_refuses_unknown_and_revoked(tmp_path):
    store = tmp_path / "api_keys.json"
    a, b = create_key(store, "a"), create_key(store, "b")
    revoked = revoke_key(store, "b")
    assert revoked.revoked and revoked.revoked_at
    keys = KeySet.load(store)
    assert keys.verify(a).name == "a" and keys.verify(a).error is None
    assert keys.verify(b).name == "b" and "revoked" in keys.verify(b).error
    assert keys.verify(a + "x").error == "unknown API key" and keys.verify(a + "x").name is None
    assert keys.verify("").error == "unknown API key"
    assert keys.active == 1


def test_revoke_is_idempotent_and_names_unknown_keys(tmp_path):
    store = tmp_path / "api_keys.json"
    create_key(store, "smoke")
    first = revoke_key(store, "smoke")
    assert revoke_key(store, "smoke").revoked_at == first.revoked_at
    with pytest.raises(KeyError, match="no API key named 'nope'.*smoke"):
        revoke_key(store, "nope")


def test_an_active_name_is_not_overwritten_but_a_revoked_one_is_replaced(tmp_path):
    store = tmp_path / "api_keys.json"
    old = create_key(store, "webclient")
    with pytest.raises(ValueError, match="active API key named 'webclient'.*revoke it first"):
        create_key(store, "webclient")
    assert KeySet.load(store).verify(old).error is None  # the refused create changed nothing
    revoke_key(store, "webclient")
    new = create_key(store, "webclient")
    keys = KeySet.load(store)
    assert keys.verify(new).error is None and keys.verify(old).error == "unknown API key"


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "a b", "x" * 64, "(none)", "../etc", "é"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="not allowed"):
        create_key(tmp_path / "k.json", name)
    assert not (tmp_path / "k.json").exists()


def test_concurrent_creates_lose_no_key(tmp_path):
    store = tmp_path / "api_keys.json"
    keys: dict[str, str] = {}

    def make(i: int) -> None:
        keys[f"k{i}"] = create_key(store, f"k{i}")

    threads = [threading.Thread(target=make, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = KeySet.load(store)
    assert sorted(read_records(store)) == sorted(keys)
    assert all(loaded.verify(k).name == n for n, k in keys.items())


def test_ensure_key_reuses_a_valid_key_and_replaces_a_revoked_or_lost_one(tmp_path):
    store, held = tmp_path / "api_keys.json", tmp_path / "smoke.key"
    key = ensure_key(store, "smoke", held)
    assert held.read_text().strip() == key and _mode(held) == 0o600
    assert ensure_key(store, "smoke", held) == key  # idempotent
    revoke_key(store, "smoke")
    fresh = ensure_key(store, "smoke", held)
    assert fresh != key and KeySet.load(store).verify(fresh).error is None
    held.unlink()
    again = ensure_key(store, "smoke", held)
    assert again != fresh and KeySet.load(store).verify(fresh).error == "unknown API key"


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not valid JSON"),
    ('{"other": 1}', 'no "keys" object'),
    ('{"keys": {"a": {"sha256": "zz", "created_at": "t"}}}', "entry 'a' is malformed"),
    ('{"keys": {"A B": {"sha256": "' + "0" * 64 + '", "created_at": "t"}}}', "is malformed"),
])
def test_a_malformed_key_file_is_named(tmp_path, content, match):
    store = tmp_path / "api_keys.json"
    store.write_text(content)
    with pytest.raises(KeyFileError, match=match):
        KeySet.load(store)


def test_a_missing_key_file_stops_the_service_with_what_to_do(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist.*make api-key NAME=.*DKT_API_AUTH=0"):
        KeySet.load(tmp_path / "absent.json")
    assert KeySet.load(_empty(tmp_path)).active == 0  # an empty key set is valid: everything is refused


def _empty(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text('{"keys": {}}\n')
    return path
