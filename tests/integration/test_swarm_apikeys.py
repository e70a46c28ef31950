"""API keys in a real Swarm stack (markers: docker, slow): the real inference image (bento_service + dkt_core)
deployed with `deploy(model=...)`, its key set mounted as a content-named Docker secret, and a key rotation
(a new key created, an old one revoked) rolled out with `dkt api-key` (what `make api-key` and
`make api-key-revoke` run) under bounded loopback POST /predict load through the nginx proxy with a key that
stays valid: 0 failed requests; afterwards the revoked key gets 401 and the new key 200 from every replica.

The key-hash file is private to this test (DKT_API_KEYS_FILE under the pytest tmp dir); images are built in
$DKT_HOME like every deploy. Needs `make docker-up`. Numbers go to $DKT_HOME/bench/deploy-apikeys.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devtools.loadgen import LoadGenerator
from devtools.services import package_model
from dkt_core.deploy.apikeys import KEYS_SECRET, attached_secret, content_name, smoke_key
from dkt_core.deploy.pipeline import deploy
from dkt_core.deploy.settings import DeploySettings
from dkt_core.deploy.stack import remove_stack, wait_converged
from dkt_core.serving.apikeys import create_key, read_records
from tests.conftest import free_port
from tests.docker.fixtures import require_swarm
from tests.integration.test_service_http import _students

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MIN_REQUESTS = 500
RESULTS: dict[str, object] = {}
# the real image starts slowly on 2 busy cores (see test_swarm_real_image.py)
HEALTH_WINDOWS = {"DKT_HEALTH_START_PERIOD": "120s", "DKT_UPDATE_MONITOR": "10s"}


def _dkt_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dkt_core.cli", "api-key", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory):
    from dkt_core.data.simulate import SimulationConfig, simulate, write_log

    client = require_swarm()
    root = tmp_path_factory.mktemp("swarm_keys")
    data = root / "log.csv.gz"
    write_log(simulate(SimulationConfig(users=30, seed=7)), str(data))
    dkt = shutil.which("dkt", path=str(Path(sys.executable).parent)) or "dkt"
    subprocess.run([dkt, "train", "--data", str(data), "--models", "lgbm", "--out", str(root / "v1"), "--quiet",
                    "--option", "lgbm.num_boost_round=10"], check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    home = root / "bentoml"
    package_model(root / "v1", home)
    keys_file = root / "secrets" / "api_keys.json"
    settings = DeploySettings(
        registry=os.environ.get("DKT_REGISTRY", "127.0.0.1:5000"), stack="dktkeys",
        api_port=free_port(), client_port=free_port(),
        base_image=os.environ.get("DKT_BASE_IMAGE", "dkt-base:bookworm"),
        home=Path(os.environ.get("DKT_HOME", DeploySettings().home)))
    env = {"DKT_REGISTRY": settings.registry, "DKT_STACK": settings.stack, "DKT_API_PORT": str(settings.api_port),
           "DKT_CLIENT_PORT": str(settings.client_port), "DKT_BASE_IMAGE": settings.base_image,
           "DKT_HOME": str(settings.home), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
           "DKT_CLIENT_REPLICAS": "0", "DKT_API_KEYS_FILE": str(keys_file), **HEALTH_WINDOWS}
    remove_stack(client, settings)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DKT_CLIENT_IMAGE", raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        old = create_key(keys_file, "old")  # to be revoked under load
        keep = create_key(keys_file, "loadgen")  # valid before and after: the load uses it
        t0 = time.monotonic()
        outcome = deploy(model=root / "v1", settings=settings, home=home, keys_file=keys_file)
        RESULTS["first_deploy_s"] = round(time.monotonic() - t0, 1)
        assert outcome.ok, outcome.message
        yield {"client": client, "settings": settings, "env": env, "keys_file": keys_file, "old": old,
               "keep": keep, "data": data}
    remove_stack(client, settings)
    out = settings.home / "bench" / "deploy-apikeys.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=2))


def _status(url: str, key: str | None, body: dict) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{url}/predict", json=body, headers=headers, timeout=30).status_code


def test_the_stack_mounts_the_key_set_as_a_secret_not_environment(keyed_stack):
    s = keyed_stack
    svc = s["client"].services.get(s["settings"].service)
    ref = attached_secret(svc)
    assert ref is not None and ref["SecretName"] == content_name(KEYS_SECRET, s["keys_file"].read_bytes())
    spec = json.dumps(svc.attrs["Spec"])
    for key in (s["old"], s["keep"], smoke_key(s["keys_file"])):
        assert key not in spec
    assert "/run/secrets/dkt_api_keys" in spec  # DKT_API_KEYS_FILE names the secret's path, nothing more
    body = {"students": _students(s["data"], n_users=1, n_hist=10, n_targets=1)[0]}
    url = s["settings"].proxy_url
    assert _status(url, None, body) == 401
    assert _status(url, "dkt_" + "x" * 43, body) == 401
    assert _status(url, s["keep"], body) == 200


def test_key_rotation_under_load_has_no_failed_request(keyed_stack):
    """Create `new` and revoke `old` with the CLI of make api-key / api-key-revoke while 4 loopback clients
    POST /predict through the proxy with the key `loadgen`: every request 200. Then old 401, new 200 on
    every replica (several calls: the proxy spreads them)."""
    s = keyed_stack
    url = s["settings"].proxy_url
    students = _students(s["data"], n_users=1, n_hist=10, n_targets=1)[0]
    body = {"students": students}
    assert _status(url, s["old"], body) == 200  # valid before the rotation
    budget = 100_000  # requests; with 600 s the generator's caps: the load must outlast the rotation
    gen = LoadGenerator(f"{url}/predict", method="POST", body=json.dumps(body).encode(), concurrency=4,
                        max_requests=budget, max_seconds=600,
                        headers={"Authorization": f"Bearer {s['keep']}"}).start()
    time.sleep(1)
    t0 = time.monotonic()
    created = _dkt_cli(s["env"], "create", "new")
    assert created.returncode == 0, created.stderr[-3000:]
    assert "now mounts" in created.stderr, created.stderr[-2000:]
    new = created.stdout.strip().splitlines()[-1]
    t_created = time.monotonic() - t0
    revoked = _dkt_cli(s["env"], "revoke", "old")
    assert revoked.returncode == 0, revoked.stderr[-3000:]
    assert "now mounts" in revoked.stderr, revoked.stderr[-2000:]
    t_revoked = time.monotonic() - t0
    t_end = gen.elapsed() + 2  # a little load on the rotated set alone
    while (gen.result.requests < MIN_REQUESTS or gen.elapsed() < t_end) and gen.elapsed() < 590:
        time.sleep(0.1)
    load = gen.stop()
    # the load ran through both rolling updates: its budgets did not end it early
    assert load.requests < budget and load.seconds >= t_revoked, load.summary()
    RESULTS["rotation"] = {"create_rollout_s": round(t_created, 1), "revoke_rollout_s": round(t_revoked - t_created, 1),
                           **load.summary()}
    assert load.failed == 0, load.summary()
    assert load.requests >= MIN_REQUESTS and load.statuses.get(200) == load.requests, load.summary()

    wait_converged(s["client"], s["settings"].service, 2, timeout_s=60)
    assert read_records(s["keys_file"])["old"].revoked
    for _ in range(6):  # both replicas answer (the proxy round-robins)
        assert _status(url, s["old"], body) == 401
        assert _status(url, new, body) == 200
        assert _status(url, s["keep"], body) == 200
    r = requests.post(f"{url}/predict", json=body, headers={"Authorization": f"Bearer {s['old']}"}, timeout=30)
    assert r.json()["error"].startswith("API key revoked at"), r.text
    metrics = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {new}"}, timeout=30).text
    assert 'key_name="old"' in metrics and 'status="401"' in metrics  # this replica counted a refused call
    svc = s["client"].services.get(s["settings"].service)
    assert attached_secret(svc)["SecretName"] == content_name(KEYS_SECRET, s["keys_file"].read_bytes())
