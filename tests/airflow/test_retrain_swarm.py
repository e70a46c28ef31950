"""End to end with dockerd + swarm + registry: the DAG's promotion path ends with the new model version
answering through the proxy (first run: the stack is deployed; second run: a Swarm rollout).

Needs what `scripts/docker/up.sh` sets up (dockerd, single-node swarm, local registry, base image) and
builds the real inference image (deps image once per lock change: minutes the first time).
"""

from __future__ import annotations

import os

import pytest
from dagutil import TINY, get_json, states, upload, xcom

from tests.conftest import skip_missing

pytestmark = [pytest.mark.docker, pytest.mark.airflow]

STACK, API_PORT = "dktaf", 18180
_DKT_HOME = os.environ.get("DKT_HOME")  # before the env fixture points it at a temporary folder


@pytest.fixture
def swarm(env, tmp_path, monkeypatch):
    import docker

    try:
        client = docker.from_env(timeout=300)
        if client.info().get("Swarm", {}).get("LocalNodeState") != "active":
            skip_missing("docker swarm is not active: run scripts/docker/up.sh")
    except docker.errors.DockerException as err:
        skip_missing(f"dockerd is not reachable ({err}): run scripts/docker/up.sh")
    from dkt_core.deploy.images import push_image
    from dkt_core.deploy.settings import REPO_ROOT, DeploySettings
    from dkt_core.deploy.stack import build_proxy_image, remove_stack

    # Deploy state (wheelhouse, deps image cache) lives in the usual DKT_HOME; retrain cache per test.
    monkeypatch.setenv("DKT_HOME", _DKT_HOME or str(REPO_ROOT / ".dkt"))
    monkeypatch.setenv("DKT_RETRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DKT_DEPLOY", "swarm")
    monkeypatch.setenv("DKT_STACK", STACK)
    monkeypatch.setenv("DKT_API_PORT", str(API_PORT))
    monkeypatch.setenv("DKT_CLIENT_PORT", str(API_PORT + 8))
    monkeypatch.setenv("DKT_CLIENT_REPLICAS", "0")
    monkeypatch.setenv("DKT_BASE_IMAGE", os.environ.get("DKT_BASE_IMAGE", "dkt-base:bookworm"))
    settings = DeploySettings.from_env()
    proxy, _ = build_proxy_image(settings)
    push_image(proxy)
    monkeypatch.setenv("DKT_PROXY_IMAGE", proxy)
    remove_stack(client, settings)
    yield settings
    remove_stack(client, settings)


def test_promotion_deploys_then_rolls_out_the_new_version(dagbag, env, s3_env, swarm, logs):
    from dkt_core.deploy.rollout import served_version

    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, later = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)
    first = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(first.state) == "success", states(first)
    v1 = xcom(first, "train")["model_version"]
    deployed = xcom(first, "deploy")
    assert deployed["status"] == "deployed" and deployed.get("first_deployment") and v1 in deployed["image"]
    assert served_version(swarm.proxy_url) == v1
    assert get_json(client, bucket, "models/champion.json")["image"] == deployed["image"]

    upload(client, bucket, "interactions/date=2020-02-01/later.csv", later)
    second = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY, "force_deploy": True})
    assert str(second.state) == "success", states(second)
    v2 = xcom(second, "train")["model_version"]
    rolled = xcom(second, "deploy")
    # Swarm pins the running image by digest: "<image>@sha256:..."
    assert rolled["previous_image"].split("@")[0] == deployed["image"] and rolled["served_version"] == v2
    assert served_version(swarm.proxy_url) == v2
    champion = get_json(client, bucket, "models/champion.json")
    assert champion["model_version"] == v2 and champion["previous_model_version"] == v1
