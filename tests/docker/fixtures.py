"""Helpers for the docker tests: tiny BentoML models in a private store and test-fixture images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dkt_core.deploy.inference import InferenceImage, ServiceSpec, build_inference_image
from dkt_core.deploy.settings import REPO_ROOT, DeploySettings
from tests.conftest import skip_missing

HERE = Path(__file__).resolve().parent
TEST_SERVICE = ServiceSpec(service_dir=HERE / "testsvc", service="service:VersionService",
                           requirements=["bentoml"], include_project=False,
                           modules=(REPO_ROOT / "dkt_core" / "serving" / "one_write.py",))


def require_swarm():
    """A Docker client of a dockerd with an active swarm; else skip_missing (a failure under CI=true)."""
    try:
        import docker

        client = docker.from_env(timeout=300)
        state = client.info()["Swarm"]["LocalNodeState"]
    except Exception as exc:  # noqa: BLE001 - no SDK, no daemon, no permission: all mean "not prepared"
        skip_missing(f"dockerd is not reachable ({type(exc).__name__}: {exc}): run `make docker-up`")
    if state != "active":
        skip_missing(f"docker swarm is {state!r}, not active: run `make docker-up`")
    return client


_CREATE = """
import json, sys, bentoml
meta = json.loads(sys.argv[1])
with bentoml.models.create(f"dkt-model:{meta['model_version']}", metadata=meta) as m:
    (open(m.path_of("weights.json"), "w")).write(json.dumps(meta))
"""


def make_model(bentoml_home: Path, model_version: str, data_version: str = "d0") -> str:
    """Create `dkt-model:<model_version>` in the store at bentoml_home (a subprocess: BentoML binds its
    store path at import time)."""
    meta = {"model_version": model_version, "data_version": data_version,
            "trained_at": "2025-01-01T00:00:00", "models": ["fixture"]}
    if (bentoml_home / "models" / "dkt-model" / model_version.lower() / "model.yaml").is_file():
        return f"dkt-model:{model_version}"
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([sys.executable, "-c", _CREATE, json.dumps(meta)], check=True, env=env, capture_output=True, text=True)
    return f"dkt-model:{model_version}"


def build_test_image(bentoml_home: Path, model_version: str, settings: DeploySettings) -> InferenceImage:
    tag = make_model(bentoml_home, model_version)
    return build_inference_image(TEST_SERVICE, bentoml_home, tag, model_version, "d0", settings,
                                 sha="test", repo="dkt-inference-test")


def make_bank(path: Path) -> Path:
    """A small question bank (one test of 3 items) for the web client container."""
    import pandas as pd

    from dkt_core.webclient.bank import SEED_COLUMNS, build_bank

    rows = [("u", f"A01000{n}001", "A010000001", 1, "2020-01-01 00:00:00", "7") for n in range(1, 4)]
    build_bank(pd.DataFrame(rows, columns=SEED_COLUMNS), answer_secret=b"docker-test answer-key secret 0123456789").save(path)
    return path
