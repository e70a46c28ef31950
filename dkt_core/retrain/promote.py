"""Promotion: package the BentoML model, build + push the image, roll the Swarm service, mark champion.

The deploy work is the deploy and packaging engineers' functions (dkt_core.deploy, dkt_core.packaging);
this module only sequences them. The champion alias moves only after the rollout and its smoke test
succeeded; a failed rollout has already put the service back on the previous image (rollout does it),
so raising leaves both the service and the alias on the champion.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dkt_core.retrain.champion import write_champion
from dkt_core.retrain.s3io import fetch_artifact
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.s3 import S3Settings, s3_client

log = logging.getLogger(__name__)


class RolloutFailed(RuntimeError):
    """The new version did not become healthy/serving; the service was rolled back (or says it was not)."""


def bentoml_home() -> Path:
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def package_model(model_version: str, artifact_uri: str, *, settings: RetrainSettings | None = None,
                  s3: S3Settings | None = None) -> dict[str, Any]:
    """Artifact in S3 -> BentoML model ``dkt-model:<model_version>`` (idempotent per version)."""
    from dkt_core.packaging import package_artifact

    settings = settings or RetrainSettings.from_env()
    local = fetch_artifact(s3_client(s3 or S3Settings.from_env()), artifact_uri, settings.cache_dir, model_version)
    home = bentoml_home()
    packaged = package_artifact(local, home=home)
    return {"bentoml_tag": packaged.tag, "bentoml_home": str(home), "model_version": model_version}


def deploy_model(model_version: str, artifact_uri: str, data_version: str, *, skip: bool = False,
                 settings: RetrainSettings | None = None, s3: S3Settings | None = None) -> dict[str, Any]:
    """Image build + push + Swarm rollout with smoke test; ``skip``/DKT_DEPLOY=none: nothing to do.

    The first deployment (no inference service yet) deploys the stack of compose.yaml with this image.
    """
    settings = settings or RetrainSettings.from_env()
    if skip or settings.deploy == "none":
        why = "skip_deploy param" if skip else "DKT_DEPLOY=none"
        log.info("deployment disabled (%s): promotion = BentoML model + champion alias", why)
        return {"status": "skipped", "reason": f"deployment disabled by {why}", "image": None}
    import docker
    from dkt_core.deploy.images import push_image
    from dkt_core.deploy.inference import ServiceSpec, build_inference_image
    from dkt_core.deploy.rollout import rollout
    from dkt_core.deploy.settings import DeploySettings

    packaged = package_model(model_version, artifact_uri, settings=settings, s3=s3)  # this worker's store
    dsettings = DeploySettings.from_env()
    built = build_inference_image(ServiceSpec(), Path(packaged["bentoml_home"]), packaged["bentoml_tag"],
                                  model_version, data_version, dsettings)
    digest = push_image(built.image)
    client = docker.from_env(timeout=300)
    if not _service_exists(client, dsettings.service):
        return _first_deployment(client, dsettings, built.image, model_version, digest)
    result = rollout(client, dsettings.service, built.image, model_version, dsettings.proxy_url)
    log.info("rollout: %s", result.to_json())
    if not result.ok:
        raise RolloutFailed(f"{result.message} (service {result.service}); champion unchanged")
    return {"status": "deployed", "image": built.image, "digest": digest, "service": result.service,
            "previous_image": result.previous_image, "served_version": result.served_version,
            "rollout_seconds": round(result.seconds, 1)}


def _service_exists(client, name: str) -> bool:
    import docker.errors

    try:
        client.services.get(name)
    except docker.errors.NotFound:
        return False
    return True


def _first_deployment(client, dsettings, image: str, model_version: str, digest: str) -> dict[str, Any]:
    """No inference service yet: deploy the stack (compose.yaml) with this image and smoke-test it."""
    import time

    from dkt_core.deploy.rollout import smoke_test
    from dkt_core.deploy.stack import deploy_stack, wait_converged

    t0 = time.monotonic()
    replicas = int(os.environ.get("DKT_INFERENCE_REPLICAS", "2"))
    deploy_stack(dsettings, {"DKT_INFERENCE_IMAGE": image})
    wait_converged(client, dsettings.service, replicas, timeout_s=300)
    seen = smoke_test(dsettings.proxy_url, model_version, timeout_s=120)
    if seen != model_version:
        raise RolloutFailed(f"stack {dsettings.stack} deployed but the proxy {dsettings.proxy_url} serves {seen!r}, "
                            f"not {model_version!r}; check `docker service ps {dsettings.service}`")
    return {"status": "deployed", "image": image, "digest": digest, "service": dsettings.service,
            "previous_image": None, "served_version": seen, "rollout_seconds": round(time.monotonic() - t0, 1),
            "first_deployment": True}


def set_champion(run_id: str, model_version: str, artifact_uri: str, data_version: str,
                 evaluation: dict[str, Any], deployment: dict[str, Any], report_uri: str | None,
                 bentoml_tag: str | None, *, s3: S3Settings | None = None) -> dict[str, Any]:
    """Move the alias models/champion.json to this model (call only after deploy_model returned)."""
    s3 = s3 or S3Settings.from_env()
    record = {
        "model_version": model_version,
        "artifact_uri": artifact_uri,
        "data_version": data_version,
        "bentoml_tag": bentoml_tag,
        "image": deployment.get("image"),
        "deployment": deployment.get("status"),
        "holdout": evaluation.get("challenger"),
        "holdout_uri": evaluation.get("holdout_uri"),
        "report_uri": report_uri,
        "run_id": run_id,
    }
    return write_champion(s3_client(s3), s3.bucket, record)
