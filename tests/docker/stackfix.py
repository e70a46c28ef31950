"""Session-scale fixture for the Swarm tests: test images v1/v2/broken in the registry and a test stack
(own name and API port, client scaled to 0) deployed from the real compose.yaml."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dkt_core.deploy.images import build_image, push_image
from dkt_core.deploy.settings import DeploySettings
from dkt_core.deploy.stack import build_proxy_image, deploy_stack, remove_stack, wait_converged
from tests.docker.fixtures import HERE, build_test_image


@dataclass
class SwarmStack:
    client: object
    settings: DeploySettings
    images: dict[str, str]  # "v1" / "v2" / "broken" -> pushed image
    timings: dict[str, float]


def start_test_stack(tmp: Path) -> SwarmStack:
    import docker

    client = docker.from_env(timeout=300)
    settings = DeploySettings(
        registry=os.environ.get("DKT_REGISTRY", "127.0.0.1:5000"), stack="dkttest",
        api_port=int(os.environ.get("DKT_TEST_API_PORT", "18000")), client_port=18088,
        base_image=os.environ.get("DKT_BASE_IMAGE", "dkt-base:bookworm"),
        home=Path(os.environ.get("DKT_HOME", DeploySettings().home)),
    )
    images, timings = {}, {}
    for v in ("v1", "v2"):
        built = build_test_image(tmp / "bentoml", v, settings)
        images[v] = built.image
        timings[f"build_{v}_s"] = built.build.seconds
        if built.deps_build:
            timings["build_deps_s"] = built.deps_build.seconds
        timings["image_size_mb"] = built.build.size_bytes / 1e6
    ctx = tmp / "broken"
    ctx.mkdir()
    images["broken"] = images["v1"].replace("v1-", "broken-")
    build_image(ctx, HERE / "broken.Dockerfile", images["broken"], {"GOOD_IMAGE": images["v1"]})
    proxy, _ = build_proxy_image(settings)
    for image in [*images.values(), proxy]:
        push_image(image)
    remove_stack(client, settings)
    deploy_stack(settings, {
        "DKT_INFERENCE_IMAGE": images["v1"], "DKT_PROXY_IMAGE": proxy, "DKT_CLIENT_REPLICAS": "0",
        # Shorter health windows than production so the suite stays fast; the monitor rule still holds:
        # monitor 12s >= start_period 6s + interval 2s x retries 3.
        "DKT_HEALTH_START_PERIOD": "6s", "DKT_UPDATE_MONITOR": "12s",
    })
    wait_converged(client, settings.service, 2)
    wait_converged(client, f"{settings.stack}_proxy", 1)
    return SwarmStack(client, settings, images, timings)


def stop_test_stack(stack: SwarmStack) -> None:
    remove_stack(stack.client, stack.settings)
    shutil.rmtree(stack.settings.home / "build" / "inference", ignore_errors=True)
