"""One migrated AIRFLOW_HOME per test session, configured before anything imports airflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="dkt-airflow-test-"))
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
}
# Must happen at import time: airflow reads its configuration once, on first import.
os.environ.update(AIRFLOW_ENV)
if str(REPO / "plugins") not in sys.path:
    sys.path.insert(0, str(REPO / "plugins"))


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per session (dag.test() needs the metadata database)."""
    exe = Path(sys.executable).parent / "airflow"
    proc = subprocess.run([str(exe), "db", "migrate"], env={**os.environ, **AIRFLOW_ENV},
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    yield _HOME


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))
