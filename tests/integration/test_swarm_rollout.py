"""Zero-downtime Swarm rollouts through the nginx proxy, under bounded loopback load (marker: docker),
and every failure branch of dkt_core.deploy.rollout: Swarm's own rollback (never-ready image), the smoke
test failing after a completed update (wrong version; /predict answering 500), the rollout timing out,
and asking for the image that already runs.

Needs `make docker-up` (dockerd, single-node swarm, registry, base image). Uses the BentoML test-fixture
service (tests/docker/testsvc) so no torch model is needed; the stack is the real compose.yaml. The real
inference image is rolled in test_swarm_real_image.py. Measured numbers are written to
$DKT_HOME/bench/deploy.json.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest
import requests

from devtools.loadgen import LoadGenerator, LoadResult
from dkt_core.deploy.rollout import rollout, served_version
from dkt_core.deploy.stack import running_healthy, wait_converged
from dkt_core.storage.s3 import S3Settings, list_keys, s3_client
from dkt_core.webclient.bank import QuestionBank
from tests.docker.fixtures import require_swarm
from tests.docker.stackfix import (
    CLIENT_BUCKET,
    CLIENT_SECRET_MARKER,
    SwarmStack,
    start_test_stack,
    stop_test_stack,
)
from tests.listeners import listeners, on_port
from tests.webclient_http import answer_items, wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MIN_REQUESTS = 2000
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_swarm()
    s = start_test_stack(tmp_path_factory.mktemp("swarm"))
    yield s
    stop_test_stack(s)
    out = s.settings.home / "bench" / "deploy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"timings": s.timings, **RESULTS}, indent=2))


def _load(stack: SwarmStack) -> LoadGenerator:
    # The fixture's /version is POST-only (BentoML api); the proxy retries /version on any method.
    return LoadGenerator(f"{stack.settings.proxy_url}/version", method="POST", body=b"{}", concurrency=4,
                         max_requests=20_000, max_seconds=240).start()


def _flowing(gen: LoadGenerator, answers: int = 50) -> LoadGenerator:
    """Return once the load has had ``answers`` replies (counted, not slept for): the old version is answering
    before the change under test starts."""
    while len(gen.result.latencies_ms) < answers and gen.elapsed() < 60:  # a list's len: safe across threads
        time.sleep(0.05)
    assert len(gen.result.latencies_ms) >= answers, f"the load never got going: {gen.result.summary()}"
    return gen


def _finish(gen: LoadGenerator, t_min_s: float = 0.0) -> LoadResult:
    """Keep the load on until at least MIN_REQUESTS were sent (bounded by the generator's budgets)."""
    while (gen.result.requests < MIN_REQUESTS or gen.elapsed() < t_min_s) and gen.elapsed() < 200:
        time.sleep(0.1)
    return gen.stop()


def test_rolling_update_v1_to_v2_has_zero_failed_requests(stack):
    assert served_version(stack.settings.proxy_url) == "v1"
    gen = _flowing(_load(stack))
    result = rollout(stack.client, stack.settings.service, stack.images["v2"], "v2", stack.settings.proxy_url)
    t_done = gen.elapsed()
    load = _finish(gen, t_done + 2)
    RESULTS["update"] = {"rollout_s": round(result.seconds, 1), "states": result.states, **load.summary()}
    assert result.ok, result.message
    assert load.failed == 0, load.summary()
    assert load.requests >= MIN_REQUESTS
    assert load.versions_after(t_done) == {"v2"}, "an old replica still answered after the rollout"
    assert {"v1", "v2"} <= set(load.versions)


def test_broken_image_rolls_back_with_zero_failed_requests(stack):
    current = served_version(stack.settings.proxy_url)
    assert current in {"v1", "v2"}
    gen = _flowing(_load(stack))
    result = rollout(stack.client, stack.settings.service, stack.images["broken"], "v3", stack.settings.proxy_url)
    load = _finish(gen)
    RESULTS["broken"] = {"rollout_s": round(result.seconds, 1), "state": result.state, "states": result.states,
                         **load.summary()}
    assert not result.ok
    assert result.rolled_back, result.message
    assert result.state in {"rollback_completed", "paused", "rollback_paused"}
    assert load.failed == 0, load.summary()
    assert load.requests >= MIN_REQUESTS
    assert set(load.versions) == {current}
    svc = stack.client.services.get(stack.settings.service)
    assert svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0] != stack.images["broken"]
    assert served_version(stack.settings.proxy_url) == current


def test_killing_a_replica_under_load_has_zero_failed_requests(stack):
    service = stack.settings.service
    wait_converged(stack.client, service, 2)
    victim = stack.client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})[0]
    gen = _flowing(_load(stack))
    victim.kill()  # SIGKILL: no draining at all
    t0 = time.monotonic()
    wait_converged(stack.client, service, 2, timeout_s=90)
    replaced_s = time.monotonic() - t0
    load = _finish(gen)
    RESULTS["kill"] = {"replaced_s": round(replaced_s, 1), **load.summary()}
    assert load.failed == 0, load.summary()
    assert load.requests >= MIN_REQUESTS
    assert running_healthy(stack.client, service) == 2


def _image(stack: SwarmStack) -> str:
    return stack.client.services.get(stack.settings.service).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]


@pytest.mark.parametrize("case", ["wrong_version", "predict_fails"])
def test_smoke_test_failure_rolls_back(stack, case):
    """Swarm completes the update (the new replicas are healthy), but the smoke test through the proxy
    fails: the served version is not the one asked for, or POST /predict answers 500. The rollout puts
    the previous image back itself and reports failure."""
    current, before = served_version(stack.settings.proxy_url), _image(stack)
    image, expected = {"wrong_version": (stack.images["v1"], "v1-but-not-this"),
                       "predict_fails": (stack.images["nopredict"], "v1")}[case]
    if before.split("@")[0] == image:
        pytest.fail(f"the stack already runs {image}: earlier tests should have left v2")
    result = rollout(stack.client, stack.settings.service, image, expected, stack.settings.proxy_url,
                     smoke_timeout_s=5)
    RESULTS[f"smoke_{case}"] = {"rollout_s": round(result.seconds, 1), "states": result.states}
    assert not result.ok and result.state == "completed", result.message
    assert "smoke test failed" in result.message
    assert ("expected 'v1-but-not-this'" if case == "wrong_version" else "/predict answered HTTP 500") in result.message
    assert result.rolled_back, result.message
    assert any(s == "manual-rollback:completed" for s in result.states)
    assert _image(stack) == before
    assert served_version(stack.settings.proxy_url) == current


def test_rollout_timeout_rolls_back(stack):
    """An update that does not settle within the rollout's timeout (here a never-ready image and a 4 s
    timeout, shorter than Swarm's own failure detection) is superseded by the previous image."""
    current, before = served_version(stack.settings.proxy_url), _image(stack)
    result = rollout(stack.client, stack.settings.service, stack.images["broken"], "v3", stack.settings.proxy_url,
                     timeout_s=4)
    RESULTS["timeout"] = {"rollout_s": round(result.seconds, 1), "states": result.states}
    assert not result.ok and result.state == "timeout", result.message
    assert "did not settle within 4s" in result.message
    assert result.rolled_back, result.message
    assert _image(stack) == before
    wait_converged(stack.client, stack.settings.service, 2, timeout_s=60)
    assert served_version(stack.settings.proxy_url) == current


def test_rolling_out_the_running_image_returns_at_once(stack):
    """The running image asked again: Swarm would start no update (no UpdateStatus would come), so the
    rollout says so and succeeds without updating anything."""
    svc = stack.client.services.get(stack.settings.service)
    running, version_index = _image(stack), svc.attrs["Version"]["Index"]
    current = served_version(stack.settings.proxy_url)
    result = rollout(stack.client, stack.settings.service, running.split("@")[0], current, stack.settings.proxy_url)
    assert result.ok and result.state == "unchanged" and result.states == ["unchanged"], result.message
    assert "nothing to update" in result.message and result.served_version == current
    svc.reload()
    assert svc.attrs["Version"]["Index"] == version_index  # no update was made
    # the wrong expectation is still caught
    wrong = rollout(stack.client, stack.settings.service, running.split("@")[0], "v0", stack.settings.proxy_url,
                    smoke_timeout_s=2)
    assert not wrong.ok and wrong.state == "unchanged" and "smoke test failed" in wrong.message


def test_web_client_container_sends_answers_to_s3(stack, monkeypatch):
    """The real client image in the stack: a student answers a 3-item test through the published port;
    the container's spool seals the batch (DKT_SPOOL_MAX_ROWS=3) and flushes it to S3 exactly once."""
    wait_converged(stack.client, f"{stack.settings.stack}_client", 1)
    url, http = f"http://127.0.0.1:{stack.settings.client_port}", requests.Session()
    wait_healthy(http, url, 60)
    bank = QuestionBank.load(stack.bank)
    test_id, items = next(iter(bank.tests.items()))
    user_id = answer_items(http, url, "s1", test_id, items)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # moto's (the same the stack was given)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = S3Settings(endpoint_url=stack.s3.endpoint_url, bucket=CLIENT_BUCKET, region="us-east-1")
    s3 = s3_client(settings)

    def uploaded() -> list[dict]:
        try:
            keys = list_keys(s3, CLIENT_BUCKET, "interactions/")
        except Exception:  # noqa: BLE001 - the bucket appears with the first flush
            return []
        return [r for k in keys
                for r in csv.DictReader(io.StringIO(s3.get_object(Bucket=CLIENT_BUCKET, Key=k)["Body"].read().decode()))]

    deadline, rows = time.monotonic() + 30, []
    while len(rows) < len(items) and time.monotonic() < deadline:  # each gunicorn worker flushes its own batch
        time.sleep(0.5)
        rows = uploaded()
    _wait_client_spool_empty(stack)  # every batch flushed and gone: nothing is left that could be sent twice
    rows = uploaded()
    assert sorted((r["assessmentItemID"], r["answerCode"]) for r in rows) == \
        sorted((i, str(int(bank.items[i].answer == "A"))) for i in items)
    # one account answered: every row carries exactly its userID (issue 12: from the session, never the form)
    assert user_id and user_id.startswith("web-"), user_id
    assert {r["userID"] for r in rows} == {user_id}
    assert {r["testId"] for r in rows} == {test_id}


def _wait_client_spool_empty(stack: SwarmStack, timeout: float = 60.0) -> None:
    """Wait until the client container's spool holds no batch (active or sealed): its flusher deletes a batch
    only after S3 has it, so nothing is left that could be uploaded again."""
    container = _containers(stack, "client")[0]
    spool = container.exec_run(["python3", "-c", "from dkt_core.settings import ClientSettings, load; "
                                "print(load(ClientSettings).spool_dir)"]).output.decode().strip()
    deadline = time.monotonic() + timeout
    while True:
        found = container.exec_run(["find", spool, "-name", "*.csv"])
        assert found.exit_code == 0, found.output.decode()
        if not found.output.strip():
            return
        assert time.monotonic() < deadline, f"batches still in the client's spool: {found.output.decode()}"
        time.sleep(0.2)


# --- issue 12: the stack's doors ---------------------------------------------------------------------------------

def _containers(stack: SwarmStack, service: str) -> list:
    return stack.client.containers.list(filters={"label": f"com.docker.swarm.service.name={stack.settings.stack}_{service}"})


def test_stack_listeners_are_on_loopback(stack):
    """The published ports of the proxy and the client, Swarm's control plane and gossip ports and the registry
    listen on 127.0.0.1 only (docker_gwbridge's host binding and swarm init --listen-addr: make docker-up)."""
    wait_converged(stack.client, f"{stack.settings.stack}_client", 1)
    for port in (stack.settings.api_port, stack.settings.client_port, 2377, 7946, 5000):
        socks = on_port(port)
        assert socks, f"nothing listens on {port}"
        assert all(s.loopback for s in socks), socks
    platform = {"dockerd", "docker-proxy", "docker-registry", "nginx", "gunicorn", "bentoml"}
    exposed = [s for s in listeners() if not s.loopback and platform & set(s.processes)]
    assert exposed == [], exposed


def test_client_container_has_no_aws_secret_in_its_environment(stack):
    """The client's S3 key reaches it as a Docker secret file (AWS_SHARED_CREDENTIALS_FILE), never as env."""
    (container,) = _containers(stack, "client")
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert not {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"} & set(env), env.keys()
    assert CLIENT_SECRET_MARKER not in json.dumps(container.attrs)  # nowhere in the container's spec
    live = container.exec_run(["env"]).output.decode()
    assert CLIENT_SECRET_MARKER not in live and "AWS_SECRET_ACCESS_KEY" not in live
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/run/secrets/dkt_client_s3"
    assert CLIENT_SECRET_MARKER in container.exec_run(["cat", "/run/secrets/dkt_client_s3"]).output.decode()


@pytest.mark.parametrize("service", ["inference", "proxy", "client"])
def test_containers_drop_capabilities_read_only_no_new_privileges(stack, service):
    for c in _containers(stack, service):
        host = c.attrs["HostConfig"]
        assert host["CapDrop"] and "ALL" in [x.upper() for x in host["CapDrop"]], host["CapDrop"]
        assert host["ReadonlyRootfs"] is (service != "inference")  # bentoml writes under its home at start
        status = c.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), "dockerd runs without --no-new-privileges"
        assert re.search(r"^CapEff:\s+0+$", status, re.M), status
        # read-only root (and for inference: its non-root user cannot write /etc)
        assert c.exec_run(["touch", "/etc/dkt-write-test"]).exit_code != 0
