"""`make deploy`: packaged model -> immutable image -> registry -> Swarm (first deploy or rolling update),
printing each step and the finally served version. `make undeploy` removes the stack."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from dkt_core.deploy.images import ImageError, push_image
from dkt_core.deploy.inference import ServiceSpec, build_inference_image, model_dir
from dkt_core.deploy.rollout import RolloutResult, rollout, smoke_test
from dkt_core.deploy.settings import DeploySettings
from dkt_core.deploy.stack import build_proxy_image, client_env, deploy_stack, remove_stack, wait_converged


@dataclass
class DeployOutcome:
    ok: bool
    image: str
    served_version: str | None
    rollout: RolloutResult | None
    message: str


def bentoml_home() -> Path:
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))


def model_metadata(path: Path) -> dict:
    import yaml  # PyYAML comes with BentoML (the `serve` extra), which packaging needs anyway

    return dict(yaml.safe_load((path / "model.yaml").read_text()).get("metadata") or {})


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def deploy(tag: str | None = None, settings: DeploySettings | None = None, spec: ServiceSpec | None = None,
           home: Path | None = None) -> DeployOutcome:
    import docker

    settings = settings or DeploySettings.from_env()
    home = home or bentoml_home()
    path, name, version = model_dir(home, tag or "dkt-model:latest")
    meta = model_metadata(path)
    model_version, data_version = meta.get("model_version", version), meta.get("data_version", "unknown")

    _step(f"build inference image for {name}:{version} (model {model_version}, data {data_version})")
    built = build_inference_image(spec or ServiceSpec(), home, f"{name}:{version}", model_version, data_version,
                                  settings)
    _step(f"built {built.image} in {built.build.seconds:.1f}s ({built.build.size_bytes / 1e6:.0f} MB)")
    _step(f"push {built.image}: {push_image(built.image)}")
    client = docker.from_env(timeout=300)
    try:
        client.services.get(settings.service)
        exists = True
    except docker.errors.NotFound:
        exists = False
    if exists:
        _step(f"rolling update of {settings.service}")
        result = rollout(client, settings.service, built.image, model_version, settings.proxy_url)
        _step(result.message)
        return DeployOutcome(result.ok, built.image, result.served_version, result, result.message)

    proxy, _ = build_proxy_image(settings)
    _step(f"push {proxy}: {push_image(proxy)}")
    env = {"DKT_INFERENCE_IMAGE": built.image, "DKT_PROXY_IMAGE": proxy}
    client_image = os.environ.get("DKT_CLIENT_IMAGE")
    bank = Path(os.environ.get("DKT_CLIENT_BANK") or settings.home / "client" / "bank.json")
    if client_image and bank.is_file():
        env.update(client_env(client_image, bank))
    else:
        env["DKT_CLIENT_REPLICAS"] = "0"
        _step("web client scaled to 0: " + (f"no question bank at {bank} (make client-bank)" if client_image else
              "DKT_CLIENT_IMAGE unset (build it: make client-image)"))
    _step(f"docker stack deploy {settings.stack}")
    deploy_stack(settings, env)
    t0 = time.monotonic()
    wait_converged(client, settings.service, 2, timeout_s=300)
    seen = smoke_test(settings.proxy_url, model_version, timeout_s=60)
    ok = seen == model_version
    msg = (f"stack up in {time.monotonic() - t0:.0f}s; {settings.proxy_url} serves {seen}" if ok
           else f"stack deployed but {settings.proxy_url} serves {seen!r}, expected {model_version!r}")
    _step(msg)
    return DeployOutcome(ok, built.image, seen, None, msg)


def undeploy(settings: DeploySettings | None = None) -> None:
    import docker

    settings = settings or DeploySettings.from_env()
    remove_stack(docker.from_env(), settings)
    _step(f"stack {settings.stack} removed")


__all__ = ["DeployOutcome", "ImageError", "deploy", "undeploy"]
