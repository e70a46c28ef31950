"""`make deploy`: packaged model -> immutable image -> registry -> Swarm (first deploy or rolling update),
printing each step and the finally served version. `make undeploy` removes the stack.

Which model is deployed is decided once, at the start (`resolve_target`): the artifact's own version
when a model directory is given (`MODEL=`), exactly the named tag (`TAG=`), and only when nothing is
named the newest packaged model by the one rule of `dkt_core.packaging.resolve_tag`. Everything after
(image build, rollout, smoke test) uses that exact `dkt-model:<version>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dkt_core.deploy.apikeys import roll_out_keys, smoke_key, stack_key_env
from dkt_core.deploy.images import ImageError, push_image
from dkt_core.deploy.inference import ServiceSpec, build_inference_image, model_dir
from dkt_core.deploy.rollout import UNCHANGED, RolloutResult, rollout, smoke_test
from dkt_core.deploy.s3access import client_s3_env, registry_login
from dkt_core.deploy.settings import DeploySettings
from dkt_core.deploy.stack import build_proxy_image, client_env, deploy_stack, remove_stack, wait_converged


@dataclass
class DeployOutcome:
    ok: bool
    image: str
    served_version: str | None
    rollout: RolloutResult | None
    message: str

    @property
    def unchanged(self) -> bool:
        """The service already ran this image: nothing was updated."""
        return self.rollout is not None and self.rollout.state == UNCHANGED


@dataclass(frozen=True)
class DeployTarget:
    """The one model a deploy is about."""

    tag: str  # dkt-model:<version>, exactly as in the store
    path: Path  # its folder in the store
    model_version: str  # what /version must report after the deploy
    data_version: str


def model_metadata(path: Path) -> dict:
    import yaml  # PyYAML comes with BentoML (the `serve` extra), which packaging needs anyway

    return dict(yaml.safe_load((path / "model.yaml").read_text()).get("metadata") or {})


def resolve_target(tag: str | None = None, model: Path | None = None, *, home: Path) -> DeployTarget:
    """`model` (artifact dir): package it (idempotent) and take the tag of the artifact's own
    model_version, never whatever is newest in the store; `tag`: exactly that tag; neither: the newest.
    ``home``: the BentoML store (``settings.bentoml_home`` at the edge)."""
    from dkt_core.packaging import package_artifact, resolve_tag

    if tag and model:
        raise ValueError("give a model directory (MODEL=) or a tag (TAG=), not both")
    if model is not None:
        packaged = package_artifact(model, home=home)
        tag, wanted = packaged.tag, str(packaged.metadata["model_version"])
    else:
        tag, wanted = resolve_tag(tag or None, home), None
    path, name, version = model_dir(home, tag)
    meta = model_metadata(path)
    model_version = str(meta.get("model_version", version))
    if wanted is not None and model_version != wanted:  # the store's copy must be the artifact's version
        raise ImageError(f"{name}:{version} in {home} holds model {model_version!r}, the artifact {model} is "
                         f"{wanted!r}: the store is inconsistent; remove that model and package again")
    return DeployTarget(f"{name}:{version}", path, model_version, str(meta.get("data_version", "unknown")))


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def deploy(tag: str | None = None, *, settings: DeploySettings, home: Path, keys_file: Path,
           spec: ServiceSpec | None = None, model: Path | None = None) -> DeployOutcome:
    """Deploy exactly `model` (an artifact directory) or `tag` (see resolve_target) from the BentoML store at
    ``home``. ``keys_file``: the service's key-hash file (``ServingSettings.api_keys_file``, what `make api-key`
    writes); the smoke test's own key is added to it."""
    import docker

    target = resolve_target(tag, model, home=home)
    mv, dv = target.model_version, target.data_version
    key = smoke_key(keys_file)  # the smoke test's own key (made when absent or revoked)
    _step(f"build inference image for {target.tag} (model {mv}, data {dv})"
          + (f" from the artifact {model}" if model else ""))
    built = build_inference_image(spec or ServiceSpec(), home, target.tag, mv, dv, settings)
    _step(f"built {built.image} in {built.build.seconds:.1f}s ({built.build.size_bytes / 1e6:.0f} MB)")
    if registry_login(settings):  # the registry takes no anonymous push (password on stdin only)
        _step(f"logged in to {settings.registry} as {settings.registry_user}")
    digest = push_image(built.image)
    _step(f"pushed {built.image}@{digest}")
    client = swarm_client(settings)  # after the login: the SDK reads the registry auth it sends with updates
    try:
        client.services.get(settings.service)
        exists = True
    except docker.errors.NotFound:
        exists = False
    if exists:
        keys = roll_out_keys(keys_file, settings.service, settings.stack, timeout_s=settings.rollout_timeout_s,
                             client=client)  # the key set changed since the stack got it (e.g. a new smoke key)
        if keys.rolled or not keys.ok:
            _step(keys.message)
        if not keys.ok:
            return DeployOutcome(False, built.image, None, None, keys.message)
        _step(f"rolling update of {settings.service}")
        result = rollout(client, settings.service, built.image, mv, settings.proxy_url, digest=digest,
                         timeout_s=settings.rollout_timeout_s, smoke_timeout_s=settings.smoke_timeout_s, api_key=key)
        _step(result.message)
        return DeployOutcome(result.ok, built.image, result.served_version, result, result.message)

    proxy, _ = build_proxy_image(settings)
    proxy_digest = push_image(proxy)
    _step(f"push {proxy}: {proxy_digest}")
    # every image pinned by digest: a re-pushed tag cannot change what runs
    env = {"DKT_INFERENCE_IMAGE": f"{built.image}@{digest}", "DKT_PROXY_IMAGE": f"{proxy}@{proxy_digest}"}
    client_image = settings.client_image
    bank = settings.client_bank or settings.home / "client" / "bank.json"
    if client_image and bank.is_file():
        env.update(client_env(client_image, bank))
        s3_env = client_s3_env(settings.client_s3_credentials)  # its own PutObject-only key, as a secret
        env.update(s3_env)
        if not s3_env:
            _step(f"web client has no S3 credentials ({settings.client_s3_credentials} missing: make "
                  "client-s3-credentials); its answers stay in its spool until they come")
    else:
        env["DKT_CLIENT_REPLICAS"] = "0"
        _step("web client scaled to 0: " + (f"no question bank at {bank} (make client-bank)" if client_image else
              "DKT_CLIENT_IMAGE unset (build it: make client-image)"))
    env.update(stack_key_env(keys_file, with_client=True))  # key hashes and the client's key as Docker secrets
    _step(f"docker stack deploy {settings.stack}")
    # another manager (make swarm-nodes-deploy): its nodes pull with the deployer's registry login
    deploy_stack(settings, env, docker_host=settings.swarm_host, with_registry_auth=bool(settings.swarm_host))
    t0 = time.monotonic()
    wait_converged(client, settings.service, 2, timeout_s=settings.rollout_timeout_s,
                   across_nodes=bool(settings.swarm_host))
    smoke = smoke_test(settings.proxy_url, mv, timeout_s=max(60.0, settings.smoke_timeout_s), api_key=key)
    msg = (f"stack up in {time.monotonic() - t0:.0f}s; {settings.proxy_url} serves {smoke.served_version}"
           if smoke.ok else f"stack deployed but the smoke test failed: {smoke.problem}")
    _step(msg)
    return DeployOutcome(smoke.ok, built.image, smoke.served_version, None, msg)


def swarm_client(settings: DeploySettings):
    """Docker client of the Swarm manager: DKT_SWARM_HOST (e.g. make swarm-nodes' manager), else the local daemon."""
    import docker

    if settings.swarm_host:
        return docker.DockerClient(base_url=settings.swarm_host, timeout=300)
    return docker.from_env(timeout=300)


def undeploy(settings: DeploySettings) -> None:
    remove_stack(swarm_client(settings), settings)
    _step(f"stack {settings.stack} removed")


__all__ = ["DeployOutcome", "DeployTarget", "ImageError", "deploy", "resolve_target", "undeploy"]
