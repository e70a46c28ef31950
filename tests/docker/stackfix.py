"""Session-scale fixture for the Swarm tests: test images v1/v2/broken in the registry and a test stack
(own name and ports) deployed from the real compose.yaml, with the real web client image writing to a moto
S3 bound to the host's docker bridge address (how containers reach this host)."""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from dkt_core.deploy.images import build_image, push_image
from dkt_core.deploy.s3access import client_s3_env, registry_login, write_credentials
from dkt_core.deploy.settings import DeploySettings
from dkt_core.deploy.stack import (
    build_client_image,
    build_proxy_image,
    client_env,
    deploy_stack,
    remove_stack,
    wait_converged,
)
from tests.conftest import MotoServer, free_port
from tests.docker.fixtures import HERE, build_test_image, make_bank

CLIENT_BUCKET = "dkt-client-test"
# the client's S3 secret key in the test stack (moto accepts any): the tests look for it where it must not be
CLIENT_SECRET_MARKER = "client-secret-" + secrets.token_hex(8)
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # pip in the client build behind a TLS proxy (harmless else)


@dataclass
class SwarmStack:
    client: object
    settings: DeploySettings
    images: dict[str, str]  # "v1" / "v2" / "broken" (never ready) / "nopredict" (v1, /predict 500) -> image
    timings: dict[str, float]
    s3: MotoServer  # what the client container writes to (reachable from this host too)
    bank: Path


def start_test_stack(tmp: Path) -> SwarmStack:
    import docker

    client = docker.from_env(timeout=300)
    settings = DeploySettings(
        # stack name and published ports derived per run: two runs (or a left-over stack) never collide
        registry=os.environ.get("DKT_REGISTRY", "127.0.0.1:5000"), stack=f"dkttest{secrets.token_hex(3)}",
        api_port=int(os.environ.get("DKT_TEST_API_PORT") or free_port()), client_port=free_port(),
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
    images["nopredict"] = images["v1"].replace("v1-", "nopredict-")
    build_image(ctx, HERE / "broken.Dockerfile", images["nopredict"],
                {"GOOD_IMAGE": images["v1"], "NEVER_READY": "0", "PREDICT_FAILS": "1"})
    proxy, _ = build_proxy_image(settings)
    ca = os.environ.get("DKT_BUILD_CA_BUNDLE") or (str(HOST_CA) if HOST_CA.is_file() else None)
    images["client"], built_client = build_client_image(settings, Path(ca) if ca else None)
    timings["build_client_s"] = built_client.seconds
    registry_login(settings)  # the registry takes no anonymous push (make docker-up made the password file)
    for image in [*images.values(), proxy]:
        push_image(image)
    gateway = client.networks.get("docker_gwbridge").attrs["IPAM"]["Config"][0]["Gateway"]
    s3 = MotoServer(free_port(gateway), host=gateway)
    s3.start()
    # the client may not create the bucket (its key only puts objects): the deployer's side makes it
    import boto3

    boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=CLIENT_BUCKET)
    # the client's own credentials travel as a file (Docker secret), never in its environment
    creds = write_credentials(tmp / "client-s3-credentials", "testing", CLIENT_SECRET_MARKER)
    bank = make_bank(tmp / "bank.json")
    remove_stack(client, settings)
    deploy_stack(settings, {
        "DKT_INFERENCE_IMAGE": images["v1"], "DKT_PROXY_IMAGE": proxy,
        # Shorter health windows than production so the suite stays fast; the monitor rule still holds:
        # monitor 12s >= start_period 6s + interval 2s x retries 3.
        "DKT_HEALTH_START_PERIOD": "6s", "DKT_UPDATE_MONITOR": "12s",
        **client_env(images["client"], bank), "DKT_CLIENT_S3_ENDPOINT_URL": s3.endpoint_url,
        "DKT_S3_BUCKET": CLIENT_BUCKET, **client_s3_env(creds),
        # small batches, sealed by size or after 2 s (answers may land on either gunicorn worker)
        "DKT_SPOOL_MAX_ROWS": "3", "DKT_SPOOL_MAX_AGE_S": "2", "DKT_FLUSH_INTERVAL_S": "1",
    })
    wait_converged(client, settings.service, 2)
    wait_converged(client, f"{settings.stack}_proxy", 1)
    return SwarmStack(client, settings, images, timings, s3, bank)


def stop_test_stack(stack: SwarmStack) -> None:
    remove_stack(stack.client, stack.settings)
    stack.s3.stop()
    shutil.rmtree(stack.settings.home / "build" / "inference", ignore_errors=True)
