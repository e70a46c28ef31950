"""A re-pushed tag cannot change what runs (issue 12 item 5): the deployer pins the inference image by digest.

`make deploy`'s code (dkt_core.deploy.pipeline.deploy, the BentoML test-fixture service so no torch model is
needed) deploys a test stack from the real compose.yaml; then someone with push rights re-pushes the very same
tag with other content (the fixture image whose /predict answers 500). The service spec still names
`<image>@sha256:<first digest>`; a forced restart of every task still runs the first image and /predict still
answers 200; and a re-deploy of that version rebuilds and re-pushes its own image, finds the digest it pinned
and starts no update (the tag is put back on the deployed content).

Marker: docker (needs `make docker-up`: dockerd, single-node swarm, the registry with its login).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
import requests

from dkt_core.deploy.images import build_image, push_image
from dkt_core.deploy.rollout import UNCHANGED, predict_problem, wait_update
from dkt_core.deploy.settings import DeploySettings
from dkt_core.deploy.stack import remove_stack, wait_converged
from tests.conftest import free_port
from tests.docker.fixtures import HERE, TEST_SERVICE, make_model, require_swarm

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json")


def _registry_digest(settings: DeploySettings, image: str) -> str:
    """What the registry serves for ``image``'s tag now (with the deployer's login: the registry needs one)."""
    repo, _, tag = image.removeprefix(f"{settings.registry}/").rpartition(":")
    auth = None
    if settings.registry_password_file.is_file():
        auth = (settings.registry_user, settings.registry_password_file.read_text().strip())
    r = requests.head(f"http://{settings.registry}/v2/{repo}/manifests/{tag}", auth=auth, timeout=10,
                      headers={"Accept": MANIFEST_TYPES})
    assert r.status_code == 200, f"registry answered {r.status_code} for {image}"
    return r.headers["Docker-Content-Digest"]


def _spec_image(svc) -> str:
    svc.reload()
    return svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]


@pytest.fixture
def pinned_stack(tmp_path, monkeypatch):
    client = require_swarm()
    settings = DeploySettings(
        registry=os.environ.get("DKT_REGISTRY", "127.0.0.1:5000"), stack=f"dktpin{secrets.token_hex(3)}",
        inference_repo="dkt-inference-test", api_port=free_port(), client_port=free_port(),
        base_image=os.environ.get("DKT_BASE_IMAGE", "dkt-base:bookworm"),
        home=Path(os.environ.get("DKT_HOME", DeploySettings().home)))
    monkeypatch.setenv("DKT_API_KEYS_FILE", str(tmp_path / "secrets" / "api_keys.json"))  # this test's keys
    monkeypatch.delenv("DKT_CLIENT_IMAGE", raising=False)  # inference + proxy only (the client scales to 0)
    monkeypatch.setenv("DKT_HEALTH_START_PERIOD", "6s")  # the fixture service starts in seconds
    monkeypatch.setenv("DKT_UPDATE_MONITOR", "12s")
    # the image tag ends with the git sha of the tree; other work in the tree must not change it mid-test
    monkeypatch.setattr("dkt_core.deploy.inference.git_sha", lambda *a, **k: "pintest")
    remove_stack(client, settings)
    yield client, settings
    remove_stack(client, settings)


def test_a_repushed_tag_does_not_change_what_runs(pinned_stack, tmp_path):
    from dkt_core.deploy.apikeys import smoke_key
    from dkt_core.deploy.pipeline import deploy
    from dkt_core.settings import ServingSettings, load

    client, settings = pinned_stack
    home = tmp_path / "bentoml"
    version = f"pin{secrets.token_hex(3)}"
    tag = make_model(home, version)
    keys_file = load(ServingSettings).api_keys_file  # this test's key-hash file (the fixture's DKT_API_KEYS_FILE)
    first = deploy(tag, settings=settings, spec=TEST_SERVICE, home=home, keys_file=keys_file)
    assert first.ok, first.message
    svc = client.services.get(settings.service)
    name, _, digest = _spec_image(svc).partition("@")
    assert name == first.image and digest.startswith("sha256:"), _spec_image(svc)
    assert _registry_digest(settings, first.image) == digest
    good_id = client.images.get(first.image).id
    key = smoke_key(keys_file)

    # Someone with push rights replaces the tag: same name, other content (its /predict answers 500).
    ctx = tmp_path / "other"
    ctx.mkdir()
    build_image(ctx, HERE / "broken.Dockerfile", first.image,
                {"GOOD_IMAGE": f"{first.image}@{digest}", "NEVER_READY": "0", "PREDICT_FAILS": "1"})
    other_id = client.images.get(first.image).id
    other_digest = push_image(first.image)
    assert other_id != good_id and other_digest != digest
    assert _registry_digest(settings, first.image) == other_digest  # the tag now names the other content

    # What runs is unchanged: the spec pins the first digest, and restarted tasks start it again.
    assert _spec_image(svc) == f"{first.image}@{digest}"
    before = (svc.attrs.get("UpdateStatus") or {}).get("StartedAt")
    svc.force_update()
    state, states = wait_update(svc, before, timeout_s=300)
    assert state == "completed", states
    wait_converged(client, settings.service, 2)
    running = [c for c in client.containers.list(filters={"label": f"com.docker.swarm.service.name={settings.service}"})
               if c.status == "running"]
    assert running and {c.attrs["Image"] for c in running} == {good_id}
    assert {c.attrs["Config"]["Image"] for c in running} == {f"{first.image}@{digest}"}
    assert predict_problem(settings.proxy_url, version, api_key=key) is None  # the other image would answer 500

    # A re-deploy of that version builds and pushes its own image again: the digest it pinned, no update.
    again = deploy(tag, settings=settings, spec=TEST_SERVICE, home=home, keys_file=keys_file)
    assert again.ok and again.image == first.image, again.message
    assert again.rollout is not None and again.rollout.state == UNCHANGED, again.rollout
    assert _spec_image(svc) == f"{first.image}@{digest}"
    assert _registry_digest(settings, first.image) == digest  # the tag names the deployed content again
    client.images.remove(other_id, force=True)
