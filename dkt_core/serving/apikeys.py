"""API keys of the inference service: create, revoke, list, and verify a presented key.

A key is ``dkt_`` + ``secrets.token_urlsafe(32)`` (256 random bits). It does not carry its name: the name is
found by the key's hash, so a leaked key tells nothing about its owner and no name prefix can be guessed.

Only hashes are stored, in one JSON file (the key-hash file, ``DKT_API_KEYS_FILE``)::

    {"keys": {"<name>": {"sha256": "<hex>", "created_at": "<UTC ISO>", "revoked_at": null | "<UTC ISO>"}}}

Why a plain SHA-256 and not a slow password hash (scrypt/argon2): a key has 256 bits of entropy, so nobody
can brute-force a hash of it, and a salt or stretching buys nothing; a fast hash keeps verification under a
microsecond on every request. (Passwords, which people choose, get scrypt in the web client.)

The file is written atomically with mode 0600 (``dkt_core.private_files``); read-modify-write cycles hold an
exclusive ``flock`` on a sidecar lock file, so two ``make api-key`` runs never lose each other's key. The
service reads the file once at start-up (``KeySet.load``); a changed key set reaches the stack as a new
Docker secret through a rolling update (``dkt_core.deploy.apikeys``).

Revoked keys stay in the file (name, hash, when), so a revoked key is answered "revoked", not "unknown", and
the audit trail survives; creating a key under a revoked name replaces that record.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from dkt_core.private_files import ensure_private, write_private

KEY_PREFIX = "dkt_"
# A name is a Prometheus label value, part of a file name (<name>.key) and of log lines: keep it plain.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MAX_KEY_CHARS = 256  # a presented token longer than this is malformed (real keys are 47 characters)
MAX_FILE_BYTES = 4 * 2**20  # a key-hash file larger than this is refused unread (Docker secrets cap at 500 KB)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(ValueError):
    """The key-hash file is missing, unreadable or malformed (the message names the file and what to fix)."""


@dataclass(frozen=True)
class KeyRecord:
    name: str
    sha256: str
    created_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_key(key: str) -> str:
    """Hex SHA-256 of the key (see the module docstring for why a fast hash is right here)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"API key name {name!r} is not allowed: use 1-63 characters of a-z, 0-9, '_', '.', '-' "
                         "starting with a letter or digit (e.g. webclient, smoke, teacher-app)")
    return name


def parse(data: bytes, source: str) -> dict[str, KeyRecord]:
    """The records of a key-hash file's bytes; ``KeyFileError`` naming ``source`` when malformed."""
    try:
        doc = json.loads(data.decode("utf-8")) if data.strip() else {"keys": {}}
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyFileError(f"the API key file {source} is not valid JSON ({exc}); restore it or create keys "
                           "again with `make api-key NAME=...`") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, dict):
        raise KeyFileError(f"the API key file {source} has no \"keys\" object; it must hold "
                           '{"keys": {"<name>": {"sha256": ..., "created_at": ..., "revoked_at": ...}}}')
    out: dict[str, KeyRecord] = {}
    for name, rec in keys.items():
        if not isinstance(name, str) or not NAME_RE.match(name) or not isinstance(rec, dict) \
                or not isinstance(rec.get("sha256"), str) or not _HEX64.match(rec["sha256"]) \
                or not isinstance(rec.get("created_at"), str) \
                or not (rec.get("revoked_at") is None or isinstance(rec.get("revoked_at"), str)):
            raise KeyFileError(f"the API key file {source}: entry {str(name)[:80]!r} is malformed (needs a valid "
                               "name, a 64-hex sha256, created_at and revoked_at null or a time)")
        out[name] = KeyRecord(name, rec["sha256"], rec["created_at"], rec.get("revoked_at"))
    return out


def dumps(records: dict[str, KeyRecord]) -> bytes:
    doc = {"keys": {n: {k: v for k, v in asdict(r).items() if k != "name"} for n, r in sorted(records.items())}}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def read_records(path: Path) -> dict[str, KeyRecord]:
    """The records in ``path`` (an absent file holds no keys)."""
    path = Path(path)
    if not path.exists():
        return {}
    if path.stat().st_size > MAX_FILE_BYTES:
        raise KeyFileError(f"the API key file {path} is larger than {MAX_FILE_BYTES} bytes; it is not a key file")
    return parse(path.read_bytes(), str(path))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of ``path`` (sidecar ``.lock`` file, 0600)."""
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def create_key(path: Path, name: str) -> str:
    """A new key named ``name``; its hash is added to ``path``. Returns the key (shown once, stored nowhere
    by this function). An active key of that name must be revoked first."""
    check_name(name)
    path = Path(path)
    with _locked(path):
        records = read_records(path)
        old = records.get(name)
        if old is not None and not old.revoked:
            raise ValueError(f"an active API key named {name!r} exists (created {old.created_at}); revoke it "
                             f"first (`make api-key-revoke NAME={name}`) or choose another name")
        key = new_key()
        records[name] = KeyRecord(name, hash_key(key), _now(), None)
        write_private(path, dumps(records))
    return key


def revoke_key(path: Path, name: str) -> KeyRecord:
    """Mark ``name`` revoked (idempotent: an already revoked key keeps its first revocation time)."""
    check_name(name)
    path = Path(path)
    with _locked(path):
        records = read_records(path)
        rec = records.get(name)
        if rec is None:
            known = ", ".join(sorted(records)) or "none"
            raise KeyError(f"no API key named {name!r} in {path} (keys: {known})")
        if not rec.revoked:
            rec = records[name] = KeyRecord(name, rec.sha256, rec.created_at, _now())
            write_private(path, dumps(records))
    return rec


def ensure_key(path: Path, name: str, key_file: Path) -> str:
    """The key in ``key_file`` when it is an active key named ``name`` in ``path``; otherwise a new key of that
    name (a revoked or lost one is replaced), written to ``key_file`` (0600). For the platform's own callers:
    the deploy smoke test, the web client, local development."""
    key_file = Path(key_file)
    if key_file.is_file():
        held = key_file.read_text().strip()
        rec = read_records(path).get(name)
        if rec is not None and not rec.revoked and hmac.compare_digest(rec.sha256, hash_key(held)):
            ensure_private(key_file)
            return held
    with _locked(Path(path)):
        records = read_records(path)
        key = new_key()
        records[check_name(name)] = KeyRecord(name, hash_key(key), _now(), None)
        write_private(key_file, (key + "\n").encode())  # first: a crash leaves an unknown key, never a lost one
        write_private(Path(path), dumps(records))
    return key


def read_key_file(path: Path) -> str:
    """A key held in a file (a Docker secret or ``$DKT_HOME/secrets/<name>.key``), stripped."""
    key = Path(path).read_text().strip()
    if not key:
        raise ValueError(f"the API key file {path} is empty; create a key with `make api-key NAME=...`")
    return key


@dataclass(frozen=True)
class Verdict:
    name: str | None  # the key's name (also for a revoked key)
    error: str | None  # why the key is refused (None: accepted)


class KeySet:
    """The key hashes the service accepts, loaded once at start-up."""

    def __init__(self, records: dict[str, KeyRecord]):
        self.records = dict(records)
        self._entries = [(r.sha256.encode(), r) for r in self.records.values()]

    @classmethod
    def load(cls, path: Path) -> KeySet:
        path = Path(path)
        if not path.is_file():
            raise KeyFileError(f"the API key file {path} does not exist: create a key with `make api-key NAME=...` "
                               "(or point DKT_API_KEYS_FILE at the key-hash file; DKT_API_AUTH=0 turns "
                               "authentication off for local development only)")
        return cls(read_records(path))

    @property
    def active(self) -> int:
        return sum(not r.revoked for r in self.records.values())

    def verify(self, key: str) -> Verdict:
        """Compare the key's hash with every stored hash in constant time (no early exit, no dict lookup keyed
        by attacker input), then answer."""
        digest = hash_key(key).encode()
        found: KeyRecord | None = None
        for stored, rec in self._entries:
            if hmac.compare_digest(stored, digest):
                found = rec
        if found is None:
            return Verdict(None, "unknown API key")
        if found.revoked:
            return Verdict(found.name, f"API key revoked at {found.revoked_at}")
        return Verdict(found.name, None)
