"""Fixtures for tests against a real `bentoml serve` of bento_service/ on a free loopback port.

`inference_server_url` (session): a tiny LightGBM artifact trained on simulated data, packaged into a
private BENTOML_HOME under the pytest tmp dir (the user's store is never touched), served by
`bentoml serve service:DKTService`; yields the base URL once /readyz is 200. The web client's browser
test requests it by this name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

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
    proc, url = start_bentoml(home, tag, log)
    yield ServedModel(url, tag, artifact, data, home, log)
    stop(proc)


@pytest.fixture(scope="session")
def inference_server_url(inference_server) -> str:
    return inference_server.url
