"""Deploy/remove the Swarm stack of compose.yaml and wait for it to converge; build the proxy image.

The Docker SDK has no stack support, so `docker stack deploy` (the CLI) is used for the stack itself;
everything that decides success (convergence, rollout) reads the API through the SDK.
"""

from __future__ import annotations

import os
import subprocess
import time

from dkt_core.deploy.images import DOCKER_DIR, BuildResult, ImageError, build_image
from dkt_core.deploy.settings import REPO_ROOT, DeploySettings

COMPOSE = REPO_ROOT / "compose.yaml"
PROXY_TAG = "2"  # bump when docker/nginx.conf.template or proxy.Dockerfile change


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


def deploy_stack(settings: DeploySettings, env: dict[str, str], compose=COMPOSE) -> None:
    full_env = {**os.environ, "DKT_API_PORT": str(settings.api_port),
                "DKT_CLIENT_PORT": str(settings.client_port), **env}
    proc = subprocess.run(["docker", "stack", "deploy", "--detach=true", "--prune", "-c", str(compose),
                           settings.stack], capture_output=True, text=True, env=full_env)
    if proc.returncode != 0:
        raise ImageError(f"docker stack deploy failed: {proc.stderr.strip()}")


def remove_stack(client, settings: DeploySettings, timeout_s: float = 60.0) -> None:
    subprocess.run(["docker", "stack", "rm", settings.stack], capture_output=True, text=True)
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


def wait_converged(client, service: str, replicas: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running_healthy(client, service) >= replicas:
            return
        time.sleep(0.5)
    tasks = [(t["Status"]["State"], t["Status"].get("Err", "")) for t in client.services.get(service).tasks()]
    raise TimeoutError(f"{service}: {replicas} healthy replicas not reached in {timeout_s}s; tasks {tasks[:6]}")
