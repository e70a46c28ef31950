"""Fixtures for tests against a real `bentoml serve` of bento_service/ on a free loopback port.

`inference_server_url` (session): a tiny LightGBM artifact trained on simulated data, packaged into a
private BENTOML_HOME under the pytest tmp dir (the user's store is never touched), served by
`bentoml serve service:DKTService`; yields the base URL once /readyz is 200. The web client's browser
test requests it by this name. The server requires an API key: `inference_server.key` (one named
``devtools``, made by devtools.services), `inference_server.api` is a requests session that sends it, and
`inference_server.key_file` holds it (DKT_CLIENT_API_KEY_FILE for a web client).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devtools.services import package_model, start_bentoml, stop

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServedModel:
    url: str
    tag: str
    artifact: Path
    data: Path
    home: Path
    log: Path
    key: str
    keys_file: Path
    revoked_key: str  # a key in the same file, revoked before the server started

    @property
    def key_file(self) -> Path:
        return self.keys_file.parent / "devtools.key"

    @property
    def api(self) -> requests.Session:
        """A new session (like a bare `requests.post`) that sends the API key."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        return session


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> tuple[Path, Path]:
    from dkt_core.data.simulate import SimulationConfig, simulate, write_log
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train

    root = tmp_path_factory.mktemp("inference")
    data = root / "log.csv.gz"
    write_log(simulate(SimulationConfig(users=30, seed=5)), str(data))
    art = train(data, root / "artifact",
                TrainConfig(models=["lgbm"], model_options={"lgbm": {"num_boost_round": 15}}), progress=False)
    return art, data


@pytest.fixture(scope="session")
def inference_server(trained_tiny, tmp_path_factory):
    artifact, data = trained_tiny
    home = tmp_path_factory.mktemp("bentoml_home")
    tag = package_model(artifact, home)
    log = home / "serve.log"
    from dkt_core.serving.apikeys import create_key, revoke_key

    revoked = create_key(home / "api_keys.json", "revoked")  # the file start_bentoml adds its key to
    revoke_key(home / "api_keys.json", "revoked")
    served = start_bentoml(home, tag, log)
    assert served.keys_file == home / "api_keys.json"
    yield ServedModel(served.url, tag, artifact, data, home, log, served.key, served.keys_file, revoked)
    stop(served.proc)


@pytest.fixture(scope="session")
def inference_server_url(inference_server) -> str:
    return inference_server.url


@pytest.fixture
def s3(s3_env):
    """The ingestion tests' store: a clean moto bucket, as ``(client, S3Settings)``."""
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client, s3_env
