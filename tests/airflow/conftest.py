"""One migrated AIRFLOW_HOME per test session, configured before anything imports airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.forwarder import LoopbackForwarder

REPO = Path(__file__).resolve().parents[2]


def airflow_env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # Read when the DAG file is parsed: retries of S3 tasks after 1 s (not 10 s) keep the retry test short.
        "DKT_S3_RETRY_DELAY_S": "1",
    }


@pytest.fixture(scope="session", autouse=True)
def airflow_home(tmp_path_factory) -> Path:
    """A fresh AIRFLOW_HOME and Airflow's environment for the session, set before any test imports airflow
    (it reads its configuration once, on first import; no test module imports it at collection)."""
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in airflow_env(home).items():
            mp.setenv(name, value)
        mp.syspath_prepend(str(REPO / "plugins"))
        yield home


@pytest.fixture(scope="session")
def airflow_db(airflow_home) -> Path:
    """`airflow db migrate` once per session (dag.test() needs the metadata database)."""
    exe = Path(sys.executable).parent / "airflow"
    proc = subprocess.run([str(exe), "db", "migrate"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    yield airflow_home




@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


class CuttableProxy(LoopbackForwarder):
    """A loopback TCP forwarder in front of the moto server that can be cut and restored.

    While ``flag`` exists every connection (new or pooled) is closed on its next use, so S3 clients get
    real connection errors while moto keeps its objects in memory. The flag is a file because Airflow
    runs each task in a forked process: a task-side fault hook cuts S3 by creating it.
    """

    def __init__(self, target_port: int, flag: Path):
        self.flag = flag
        super().__init__(target_port)

    def cut(self) -> None:
        self.flag.touch()

    def restore(self) -> None:
        self.flag.unlink(missing_ok=True)

    def admit(self) -> bool:
        return not self.flag.exists()

    def forward(self, data: bytes, upstream: bool) -> bool:
        return not self.flag.exists()


@pytest.fixture
def s3_proxy(moto_server, tmp_path):
    proxy = CuttableProxy(moto_server.port, tmp_path / "s3-down")
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def logs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(initial, later) interactions of 120 simulated users split at a point in time."""
    from dkt_core.data.simulate import SimulationConfig, simulate

    df = simulate(SimulationConfig(users=120, seed=3, tests=40, tags=20, mean_tests_per_user=8))
    cut = df["Timestamp"].quantile(0.75)
    return df[df["Timestamp"] < cut].reset_index(drop=True), df[df["Timestamp"] >= cut].reset_index(drop=True)


@pytest.fixture
def env(airflow_db, s3_env, tmp_path, monkeypatch):
    """Connection + local state for one test; deployment disabled (no Docker needed)."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing",
         "extra": {"region_name": "us-east-1", "endpoint_url": s3_env.endpoint_url}}))
    monkeypatch.setenv("DKT_DEPLOY", "none")
    monkeypatch.setenv("DKT_HOME", str(tmp_path / "dkt"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("DKT_HOLDOUT_FRACTION", "0.25")
    from dkt_core.storage.s3 import ensure_bucket, s3_client

    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client
