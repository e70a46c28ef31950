"""Deploy/remove the Swarm stack of compose.yaml and wait for it to converge; build the proxy and web
client images (the inference image is dkt_core.deploy.inference's).

The Docker SDK has no stack support, so `docker stack deploy` (the CLI) is used for the stack itself;
everything that decides success (convergence, rollout) reads the API through the SDK.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from dkt_core.deploy.images import DOCKER_DIR, BuildResult, ImageError, build_image
from dkt_core.deploy.settings import REPO_ROOT, DeploySettings

COMPOSE = REPO_ROOT / "compose.yaml"
PROXY_TAG = "4"  # bump when docker/nginx.conf.template, proxy-common.conf or proxy.Dockerfile change


def build_proxy_image(settings: DeploySettings) -> tuple[str, BuildResult]:
    """nginx proxy image; needs the network for apt (the base's own Debian mirror)."""
    image = settings.image(settings.proxy_repo, PROXY_TAG)
    ctx = settings.home / "build" / "proxy"
    ctx.mkdir(parents=True, exist_ok=True)
    for name in ("nginx.conf.template", "proxy-common.conf", "proxy-entrypoint.sh"):
        (ctx / name).write_bytes((DOCKER_DIR / name).read_bytes())
    (ctx / "proxy-entrypoint.sh").chmod(0o755)
    return image, build_image(ctx, DOCKER_DIR / "proxy.Dockerfile", image, {"BASE_IMAGE": settings.base_image},
                              network_mode="default")


def build_client_image(settings: DeploySettings, ca_bundle: Path | None = None) -> tuple[str, BuildResult]:
    """Web client image (docker/client.Dockerfile; pip installs the `client` extra, so the build needs the
    package index). Tagged by the hash of what goes in, so a tag never changes meaning. ``ca_bundle``: a CA
    bundle pip needs behind a TLS-intercepting proxy (DKT_BUILD_CA_BUNDLE; stays in the builder stage)."""
    ctx = settings.home / "build" / "client"
    shutil.rmtree(ctx, ignore_errors=True)
    (ctx / "docker" / "ca").mkdir(parents=True)
    digest = hashlib.sha256(settings.base_image.encode())
    for name in ("requirements.lock", "pyproject.toml", "README.md"):
        shutil.copyfile(REPO_ROOT / name, ctx / name)
    shutil.copytree(REPO_ROOT / "dkt_core", ctx / "dkt_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in sorted(p for p in ctx.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(ctx)).encode() + f.read_bytes())
    digest.update((DOCKER_DIR / "client.Dockerfile").read_bytes())
    if ca_bundle:
        shutil.copyfile(ca_bundle, ctx / "docker" / "ca" / "host-ca.crt")  # not hashed: not in the image
    image = settings.image(settings.client_repo, digest.hexdigest()[:12])
    return image, build_image(ctx, DOCKER_DIR / "client.Dockerfile", image, {"BASE_IMAGE": settings.base_image},
                              network_mode="default")


def client_env(client_image: str, bank_file: Path) -> dict[str, str]:
    """Stack variables that run the web client: its image and its question bank as a Docker config
    (named by the bank's content hash: configs are immutable, a new bank is a new config)."""
    if not bank_file.is_file():
        raise FileNotFoundError(f"question bank {bank_file} does not exist: build it with `make client-bank` "
                                "(or python -m dkt_core.webclient build-bank) or point DKT_CLIENT_BANK at one")
    digest = hashlib.sha256(bank_file.read_bytes()).hexdigest()[:12]
    return {"DKT_CLIENT_IMAGE": client_image, "DKT_CLIENT_BANK_FILE": str(bank_file.resolve()),
            "DKT_CLIENT_BANK_ID": digest}


def deploy_stack(settings: DeploySettings, env: dict[str, str], compose=COMPOSE, docker_host: str | None = None,
                 with_registry_auth: bool = False) -> None:
    """`docker stack deploy` of compose.yaml. ``docker_host``: the manager to deploy to (default: the local
    daemon, or DOCKER_HOST); ``with_registry_auth``: hand the deployer's registry login to the swarm, which
    nodes other than this one need to pull from a registry that requires a login (make swarm-nodes)."""
    full_env = {**os.environ, "DKT_API_PORT": str(settings.api_port),
                "DKT_CLIENT_PORT": str(settings.client_port), **env}
    if docker_host:
        full_env["DOCKER_HOST"] = docker_host
    proc = subprocess.run(["docker", "stack", "deploy", "--detach=true", "--prune",
                           *(["--with-registry-auth"] if with_registry_auth else []), "-c", str(compose),
                           settings.stack], capture_output=True, text=True, env=full_env)
    if proc.returncode != 0:
        raise ImageError(f"docker stack deploy failed: {proc.stderr.strip()}")


def remove_stack(client, settings: DeploySettings, timeout_s: float = 60.0) -> None:
    env = {**os.environ, **({"DOCKER_HOST": settings.swarm_host} if settings.swarm_host else {})}
    subprocess.run(["docker", "stack", "rm", settings.stack], capture_output=True, text=True, env=env)
    deadline = time.monotonic() + timeout_s
    label = {"label": f"com.docker.stack.namespace={settings.stack}"}
    while time.monotonic() < deadline:
        if not client.services.list(filters=label) and not client.containers.list(filters=label) \
                and not client.networks.list(filters=label):
            return
        time.sleep(0.5)
    raise TimeoutError(f"stack {settings.stack} still has services/containers after {timeout_s}s")


def running_healthy(client, service: str) -> int:
    """Containers of the service that are running and healthy (or have no healthcheck)."""
    n = 0
    for c in client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"}):
        health = c.attrs["State"].get("Health", {}).get("Status")
        if c.status == "running" and health in (None, "healthy"):
            n += 1
    return n


def running_tasks(client, service: str) -> dict[str, int]:
    """Running tasks of the service per node id, read from a manager: the whole swarm, not one daemon's
    containers. A task with a healthcheck is `running` only once healthy (`starting` before)."""
    per_node: dict[str, int] = {}
    for t in client.services.get(service).tasks(filters={"desired-state": "running"}):
        if t["Status"]["State"] == "running":
            per_node[t["NodeID"]] = per_node.get(t["NodeID"], 0) + 1
    return per_node


def wait_converged(client, service: str, replicas: int, timeout_s: float = 120.0, across_nodes: bool = False) -> None:
    """Wait for ``replicas`` healthy replicas: containers of the local daemon, or with ``across_nodes``
    running tasks anywhere in the swarm (``client`` must then be a manager's)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = sum(running_tasks(client, service).values()) if across_nodes else running_healthy(client, service)
        if n >= replicas:
            return
        time.sleep(0.5)
    tasks = [(t["Status"]["State"], t["Status"].get("Err", "")) for t in client.services.get(service).tasks()]
    raise TimeoutError(f"{service}: {replicas} healthy replicas not reached in {timeout_s}s; tasks {tasks[:6]}")

