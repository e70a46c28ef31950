"""Promotion: package the BentoML model, build + push the image, roll the Swarm service, mark champion.

The deploy work is the deploy and packaging engineers' functions (dkt_core.deploy, dkt_core.packaging);
this module only sequences them. The champion alias moves only after the rollout and its smoke test
succeeded; a failed rollout has already put the service back on the previous image (rollout does it),
so raising leaves both the service and the alias on the champion.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dkt_core.retrain.artifacts import fetch_artifact
from dkt_core.retrain.champion import write_champion
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.settings import DeploySettings
from dkt_core.storage.workspace import Workspace

log = logging.getLogger(__name__)


class RolloutFailed(RuntimeError):
    """The new version did not become healthy/serving; the service was rolled back (or says it was not)."""


def package_model(model_version: str, artifact_uri: str, *, artifact_sha256: str | None = None,
                  bentoml_home: Path, ws: Workspace) -> dict[str, Any]:
    """Artifact in S3 (its sha256 checked) -> BentoML model ``dkt-model:<model_version>`` in the store at
    ``bentoml_home`` (idempotent per version)."""
    from dkt_core.packaging import package_artifact

    local = fetch_artifact(ws.client, artifact_uri, ws.cache_dir, model_version, sha256=artifact_sha256)
    packaged = package_artifact(local, home=bentoml_home)
    return {"bentoml_tag": packaged.tag, "bentoml_home": str(bentoml_home), "model_version": model_version}


def deploy_model(model_version: str, artifact_uri: str, data_version: str, *, skip: bool = False,
                 packaged: dict[str, Any] | None = None, artifact_sha256: str | None = None,
                 settings: RetrainSettings, deploy_settings: DeploySettings, api_keys_file: Path,
                 bentoml_home: Path, ws: Workspace) -> dict[str, Any]:
    """Image build + push + Swarm rollout with smoke test (dkt_core.deploy.pipeline.deploy: the first
    deployment deploys the stack); ``skip``/DKT_DEPLOY=none: nothing to do. ``packaged``: what
    ``package_model`` returned for this model (its tag is deployed as is); packaged here (into
    ``bentoml_home``) only when the caller did not (a direct call). ``api_keys_file``: the service's key-hash
    file (the smoke test's key is added to it)."""
    if skip or settings.deploy == "none":
        why = "skip_deploy param" if skip else "DKT_DEPLOY=none"
        log.info("deployment disabled (%s): promotion = BentoML model + champion alias", why)
        return {"status": "skipped", "reason": f"deployment disabled by {why}", "image": None}
    from dkt_core.deploy.pipeline import deploy

    if packaged is None or packaged.get("model_version") != model_version:
        packaged = package_model(model_version, artifact_uri, artifact_sha256=artifact_sha256,
                                 bentoml_home=bentoml_home, ws=ws)  # this worker's store
    outcome = deploy(packaged["bentoml_tag"], settings=deploy_settings, home=Path(packaged["bentoml_home"]),
                     keys_file=api_keys_file)
    if outcome.rollout is not None:
        log.info("rollout: %s", outcome.rollout.to_json())
    if not outcome.ok:
        raise RolloutFailed(f"{outcome.message}; champion unchanged")
    r = outcome.rollout
    return {"status": "deployed", "image": outcome.image, "served_version": outcome.served_version,
            "data_version": data_version, "first_deployment": r is None,
            "previous_image": r.previous_image if r else None,
            "service": r.service if r else None, "rollout_seconds": round(r.seconds, 1) if r else None}


def set_champion(run_id: str, model_version: str, artifact_uri: str, data_version: str,
                 evaluation: dict[str, Any], deployment: dict[str, Any], report_uri: str | None,
                 bentoml_tag: str | None, *, artifact_sha256: str | None = None, ws: Workspace) -> dict[str, Any]:
    """Move the alias models/champion.json to this model (call only after deploy_model returned)."""
    record = {
        "model_version": model_version,
        "artifact_uri": artifact_uri,
        "artifact_sha256": artifact_sha256,  # every later load of the champion checks it
        "data_version": data_version,
        "bentoml_tag": bentoml_tag,
        "image": deployment.get("image"),
        "deployment": deployment.get("status"),
        "holdout": evaluation.get("challenger"),
        "holdout_uri": evaluation.get("holdout_uri"),
        "report_uri": report_uri,
        "run_id": run_id,
    }
    return write_champion(ws.client, ws.bucket, record)
