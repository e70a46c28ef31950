"""Zero-downtime Swarm rollouts through the nginx proxy, under bounded loopback load (marker: docker).

Needs `make docker-up` (dockerd, single-node swarm, registry, base image). Uses the BentoML test-fixture
service (tests/docker/testsvc) so no torch model is needed; the stack is the real compose.yaml.
Measured numbers are written to $DKT_HOME/bench/deploy.json.
"""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
import requests

import docker
from dkt_core.deploy.loadgen import LoadGenerator, LoadResult
from dkt_core.deploy.rollout import rollout, served_version
from dkt_core.deploy.stack import running_healthy, wait_converged
from dkt_core.storage.s3 import S3Settings, list_keys, s3_client
from dkt_core.webclient.bank import QuestionBank
from tests.conftest import skip_missing
from tests.docker.stackfix import CLIENT_BUCKET, SwarmStack, start_test_stack, stop_test_stack
from tests.webclient_http import answer_items, wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MIN_REQUESTS = 2000
RESULTS: dict[str, dict] = {}


def _docker_ready() -> bool:
    try:
        client = docker.from_env(timeout=5)
        return client.info()["Swarm"]["LocalNodeState"] == "active"
    except Exception:  # noqa: BLE001 - any failure means "not prepared"
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not _docker_ready():
        skip_missing("dockerd with an active swarm is required: run `make docker-up`")
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


def _finish(gen: LoadGenerator, t_min_s: float = 0.0) -> LoadResult:
    """Keep the load on until at least MIN_REQUESTS were sent (bounded by the generator's budgets)."""
    while (gen.result.requests < MIN_REQUESTS or gen.elapsed() < t_min_s) and gen.elapsed() < 200:
        time.sleep(0.1)
    return gen.stop()


def test_rolling_update_v1_to_v2_has_zero_failed_requests(stack):
    assert served_version(stack.settings.proxy_url) == "v1"
    gen = _load(stack)
    time.sleep(1)
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
    gen = _load(stack)
    time.sleep(1)
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
    gen = _load(stack)
    time.sleep(1)
    victim.kill()  # SIGKILL: no draining at all
    t0 = time.monotonic()
    wait_converged(stack.client, service, 2, timeout_s=90)
    replaced_s = time.monotonic() - t0
    load = _finish(gen)
    RESULTS["kill"] = {"replaced_s": round(replaced_s, 1), **load.summary()}
    assert load.failed == 0, load.summary()
    assert load.requests >= MIN_REQUESTS
    assert running_healthy(stack.client, service) == 2


def test_web_client_container_sends_answers_to_s3(stack, monkeypatch):
    """The real client image in the stack: a student answers a 3-item test through the published port;
    the container's spool seals the batch (DKT_SPOOL_MAX_ROWS=3) and flushes it to S3 exactly once."""
    wait_converged(stack.client, f"{stack.settings.stack}_client", 1)
    url, http = f"http://127.0.0.1:{stack.settings.client_port}", requests.Session()
    wait_healthy(http, url, 60)
    bank = QuestionBank.load(stack.bank)
    test_id, items = next(iter(bank.tests.items()))
    answer_items(http, url, "s1", test_id, items)
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
    time.sleep(3)  # a few more flush cycles: nothing may be sent twice
    rows = uploaded()
    assert sorted((r["assessmentItemID"], r["answerCode"]) for r in rows) == \
        sorted((i, str(int(bank.items[i].answer == "A"))) for i in items)
    assert {r["userID"] for r in rows} == {"s1"} and {r["testId"] for r in rows} == {test_id}
