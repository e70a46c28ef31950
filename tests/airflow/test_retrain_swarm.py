"""End to end with dockerd + swarm + registry: the DAG's promotion path ends with the new model version
answering through the proxy (first run: the stack is deployed; second run: a Swarm rollout), and its
failed-deploy path (third run: the new image is not ready within the rollout timeout -> rolled back,
`deploy` fails, `set_champion` does not run, models/champion.json and the served model are unchanged).
After the three runs no secret in play (S3 secret keys, registry password, every API key, the web client's
keys) appears in a task's output or log record, an XCom, Airflow's files or database, or the stack's service
logs, service specs and container configs (tests/secretscan.py).

Needs what `scripts/docker/up.sh` sets up (dockerd, single-node swarm, local registry, base image) and
builds the real inference image (deps image once per lock change: minutes the first time).
"""

from __future__ import annotations

import json
import logging
import os
import secrets

import pytest
from dagutil import TINY, get_json, states, upload, xcom

import docker
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
    monkeypatch.setenv("DKT_API_KEYS_FILE", str(tmp_path / "secrets" / "api_keys.json"))  # this test's API keys
    # Real-looking S3 secrets (moto takes any), so the scan at the end can look for them: the tasks' key
    # (the environment wins over the connection, plugins/dkt_airflow/s3env.py) and the connection's password.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-env-secret-" + secrets.token_hex(12))
    conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({**conn, "password": "s3-conn-" + secrets.token_hex(12)}))
    # The real image loads torch: on 2 busy cores that took 30 s, past the production start period (20 s).
    # A long start period costs nothing (the first healthy check ends it); the per-replica monitor window
    # is kept short so the rollout stays quick. No never-ready image is rolled out here.
    monkeypatch.setenv("DKT_HEALTH_START_PERIOD", "120s")
    monkeypatch.setenv("DKT_UPDATE_MONITOR", "10s")
    monkeypatch.setenv("DKT_BASE_IMAGE", os.environ.get("DKT_BASE_IMAGE", "dkt-base:bookworm"))
    settings = DeploySettings.from_env()
    proxy, _ = build_proxy_image(settings)
    push_image(proxy)
    monkeypatch.setenv("DKT_PROXY_IMAGE", proxy)
    remove_stack(client, settings)
    yield settings
    remove_stack(client, settings)


def test_promotion_deploys_rolls_out_then_a_failed_deploy_keeps_the_champion(dagbag, env, s3_env, swarm, logs,
                                                                               monkeypatch, airflow_db, capfd, caplog):
    from dkt_core.deploy.apikeys import smoke_key
    from dkt_core.deploy.rollout import served_version as served_version_with_key
    from dkt_core.settings import ServingSettings, load

    def served_version(url: str) -> str | None:  # with the deployer's smoke-test key (the API needs one)
        return served_version_with_key(url, api_key=smoke_key(load(ServingSettings).api_keys_file))

    caplog.set_level(logging.INFO)  # every record the tasks log at INFO and above is scanned at the end
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    initial, later = logs
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", initial)
    first = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(first.state) == "success", states(first)
    v1 = xcom(first, "ensemble")["model_version"]
    deployed = xcom(first, "deploy")
    assert deployed["status"] == "deployed" and deployed.get("first_deployment") and v1 in deployed["image"]
    assert served_version(swarm.proxy_url) == v1
    assert get_json(client, bucket, "models/champion.json")["image"] == deployed["image"]

    upload(client, bucket, "interactions/date=2020-02-01/later.csv", later)
    second = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY, "force_deploy": True})
    assert str(second.state) == "success", states(second)
    v2 = xcom(second, "ensemble")["model_version"]
    rolled = xcom(second, "deploy")
    # Swarm pins the running image by digest: "<image>@sha256:..."
    assert rolled["previous_image"].split("@")[0] == deployed["image"] and rolled["served_version"] == v2
    assert served_version(swarm.proxy_url) == v2
    champion = get_json(client, bucket, "models/champion.json")
    assert champion["model_version"] == v2 and champion["previous_model_version"] == v1

    # Third run: the new image cannot become ready within DKT_ROLLOUT_TIMEOUT_S=3 (the real image needs
    # seconds to load torch and pass two healthchecks), i.e. the image is not ready in time: the rollout
    # times out, puts v2's image back, and the DAG must stop before the champion alias moves.
    svc = docker.from_env().services.get(swarm.service)
    image_before = svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    monkeypatch.setenv("DKT_ROLLOUT_TIMEOUT_S", "3")
    newcomers = later.assign(userID="new-" + later["userID"].astype(str))
    upload(client, bucket, "interactions/date=2020-03-01/newcomers.csv", newcomers)
    third = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY, "force_deploy": True})
    st = states(third)
    assert str(third.state) == "failed", st
    assert st["deploy"] == "failed" and st["set_champion"] == "upstream_failed", st
    v3 = xcom(third, "ensemble")["model_version"]
    assert v3 not in (v1, v2)
    assert get_json(client, bucket, "models/champion.json") == champion  # unchanged, byte for byte
    assert served_version(swarm.proxy_url) == v2
    svc.reload()
    assert svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == image_before
    # ... and v3's image was rolled out, then replaced by the previous one (not a failure before the rollout)
    assert v3 in svc.attrs["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert svc.attrs["UpdateStatus"]["State"] == "completed"

    _no_secret_anywhere([first, second, third], swarm, airflow_db, capfd, caplog)


def _no_secret_anywhere(runs, settings, airflow_home, capfd, caplog) -> None:
    """Every secret of this run, looked for in every place the run left text in (kinds and places only)."""
    import configparser

    from dkt_core.settings import ServingSettings, load
    from tests.secretscan import files_under, leaks, secret, stack_places, xcom_places

    conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    assert settings.registry_password_file.is_file(), "make docker-up makes the registry password"
    in_play = [secret("S3 secret key (task environment)", os.environ["AWS_SECRET_ACCESS_KEY"]),
               secret("S3 secret key (Airflow connection password)", conn["password"]),
               secret("registry password", settings.registry_password_file.read_text(), user=settings.registry_user)]
    keys_dir = load(ServingSettings).api_keys_file.parent
    key_files = sorted(keys_dir.glob("*.key"))
    assert {p.stem for p in key_files} >= {"smoke", "webclient"}, key_files  # the deployer's and the client's keys
    in_play += [secret(f"API key {p.stem!r}", p.read_text()) for p in key_files]
    if settings.client_s3_credentials.is_file():  # the web client's S3 key, when one was made here
        creds = configparser.ConfigParser()
        creds.read(settings.client_s3_credentials)
        in_play.append(secret("web client's S3 secret key", creds["default"]["aws_secret_access_key"]))
    out = capfd.readouterr()
    places = {"task output (stdout)": out.out, "task output (stderr)": out.err, "task log records": caplog.text,
              **xcom_places(runs), **files_under(airflow_home), **stack_places(settings.stack)}
    assert not leaks(in_play, places)
