"""API key sets in the Swarm stack: the key-hash file as a content-named Docker secret, and a key change rolled
out to the inference service with zero failed requests.

Docker secrets are immutable, so every key set is a new secret ``dkt_api_keys_<sha8>`` (the first 8 hex of
its content's SHA-256). A change (``make api-key``, ``make api-key-revoke``) creates that secret and updates
the inference service to mount it at ``/run/secrets/dkt_api_keys`` in place of the old one; the update is
compose.yaml's start-first, health-gated rolling update, so a new replica (reading the new key set at
start-up) is ready before an old one stops, and a key valid in both sets is answered 200 throughout. A
revoked key keeps working on the old replicas until each is replaced; when the update completes no replica
accepts it. The deployer's own keys (``smoke`` for the smoke test, ``webclient`` for the stack's web client)
are made here when absent (``stack_key_env``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dkt_core.serving.apikeys import ensure_key

KEYS_SECRET = "dkt_api_keys"  # the secret's name prefix and its file name under /run/secrets in the service
CLIENT_KEY_SECRET = "dkt_client_api_key"  # the web client's own key, the same way
SMOKE_KEY, CLIENT_KEY = "smoke", "webclient"
EMPTY_KEYS = b'{"keys": {}}\n'


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def content_name(prefix: str, data: bytes) -> str:
    return f"{prefix}_{content_id(data)}"


def key_file(keys_file: Path, name: str) -> Path:
    """Where the deployer keeps a key it holds itself: beside the key-hash file, ``<name>.key`` (0600)."""
    return Path(keys_file).parent / f"{name}.key"


def smoke_key(keys_file: Path) -> str:
    """The deploy smoke test's key (made when absent or revoked)."""
    return ensure_key(keys_file, SMOKE_KEY, key_file(keys_file, SMOKE_KEY))


def stack_key_env(keys_file: Path, with_client: bool) -> dict[str, str]:
    """compose.yaml's variables for the key secrets of a first stack deploy: the key-hash file (with the
    ``smoke`` key, and ``webclient`` when the client runs) and the client's key file, each with its content
    name. Only file paths and hashes: the keys never pass through the environment."""
    smoke_key(keys_file)
    env = {}
    if with_client:
        ensure_key(keys_file, CLIENT_KEY, key_file(keys_file, CLIENT_KEY))
        client_file = key_file(keys_file, CLIENT_KEY)
        env.update(DKT_CLIENT_API_KEY_SRC=str(client_file.resolve()),
                   DKT_CLIENT_API_KEY_ID=content_id(client_file.read_bytes()))
    env.update(DKT_API_KEYS_SRC=str(Path(keys_file).resolve()), DKT_API_KEYS_ID=content_id(Path(keys_file).read_bytes()))
    return env


@dataclass
class KeyRollout:
    ok: bool
    rolled: bool  # a Swarm update ran
    secret: str | None  # the secret the service mounts now
    message: str
    states: list[str]


def attached_secret(svc, target: str = KEYS_SECRET) -> dict | None:
    """The service's secret reference mounted as ``target`` (None when it has none)."""
    for ref in svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []:
        if ref.get("File", {}).get("Name") == target:
            return ref
    return None


def ensure_secret(client, name: str, data: bytes, stack: str):
    """The secret ``name`` (created with ``data`` when absent; labelled with the stack so `docker stack rm`
    removes it)."""
    import docker

    try:
        return client.secrets.get(name)
    except docker.errors.NotFound:
        return client.secrets.create(name=name, data=data, labels={"com.docker.stack.namespace": stack})


def roll_out_keys(keys_file: Path, service: str, stack: str, timeout_s: float = 300.0, client=None) -> KeyRollout:
    """Update ``service`` to mount the key set in ``keys_file`` (a new content-named secret). No Swarm or no
    such service: nothing to roll out (``rolled`` False, ``ok`` True: the file alone was the change)."""
    from docker.types import SecretReference

    import docker
    from dkt_core.deploy.rollout import wait_update

    try:
        client = client or docker.from_env(timeout=60)
        svc = client.services.get(service)
    except docker.errors.NotFound:
        return KeyRollout(True, False, None, f"no Swarm service {service} is running: only {keys_file} was "
                          "updated (the stack reads it when deployed)", [])
    except docker.errors.DockerException as exc:
        return KeyRollout(True, False, None, f"no Swarm stack reachable ({type(exc).__name__}): only {keys_file} "
                          "was updated (the stack reads it when deployed)", [])
    data = Path(keys_file).read_bytes()
    name = content_name(KEYS_SECRET, data)
    old = attached_secret(svc)
    if old is not None and old.get("SecretName") == name:
        return KeyRollout(True, False, name, f"{service} already mounts this key set ({name})", [])
    secret = ensure_secret(client, name, data, stack)
    others = [ref for ref in svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
              if ref.get("File", {}).get("Name") != KEYS_SECRET]
    refs = [SecretReference(r["SecretID"], r["SecretName"], r["File"]["Name"], r["File"].get("UID", "0"),
                            r["File"].get("GID", "0"), r["File"].get("Mode", 0o444)) for r in others]
    refs.append(SecretReference(secret.id, name, KEYS_SECRET, "0", "0", 0o444))
    try:
        svc.reload()  # a stale version index makes the daemon answer "update out of sequence"
        before = (svc.attrs.get("UpdateStatus") or {}).get("StartedAt")
        svc.update(secrets=refs)
        state, states = wait_update(svc, before, timeout_s)
    except docker.errors.DockerException as exc:  # the daemon or the swarm went away mid-update
        return KeyRollout(False, True, None, f"the key-set update of {service} could not be followed "
                          f"({type(exc).__name__}: {str(exc)[:300]}); the key file is updated: roll it out again "
                          "with `make api-key-rollout`", [])
    if state != "completed":
        return KeyRollout(False, True, old and old.get("SecretName"), f"the key-set update of {service} ended "
                          f"in {state!r} (states {states}); Swarm keeps the previous key set", states)
    if old is not None:  # unused now; a secret another service still mounts is refused by the daemon: keep it
        try:
            client.secrets.get(old["SecretID"]).remove()
        except docker.errors.APIError:
            pass
    return KeyRollout(True, True, name, f"{service} now mounts {name} (rolling update completed)", states)
