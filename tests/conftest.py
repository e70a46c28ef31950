"""Shared fixtures: tiny synthetic interaction logs, a real moto S3 server, the shared data folder.

Missing prerequisites: a test or fixture that cannot run because something it needs is absent (dockerd,
a Swarm, Chromium, the real data set, ...) calls ``skip_missing(reason)``, never a bare ``pytest.skip``.
Locally that is an ordinary skip; under ``CI=true`` (.ci/run) it fails the run with the same reason, so
CI cannot turn green by skipping what it was meant to prove. A bare ``pytest.skip`` stays a skip
everywhere: keep it for deliberate skips that are not about the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from devtools.ports import free_port, wait_for_port  # noqa: F401  (the one port helper; tests import it from here)

# The tests of the CI hook below run small suites of their own (tests/unit/test_ci_skips.py).
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
# A clone next to a copy of shared/ (as in CI and in /work) finds the data without any setting.
SHARED_DATA = Path(os.environ.get("DKT_SHARED_DATA", REPO.parent / "shared" / "data"))
# Prefix of every skip reason that names a missing prerequisite: the hooks below match on it (text, not an
# exception class, so it also works for skipif marks and when this module is imported under two names).
MISSING = "missing prerequisite: "


def ci_strict() -> bool:
    """True under CI (``CI=true``, as .ci/run sets it): missing prerequisites fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def skip_missing(reason: str, *, allow_module_level: bool = False) -> NoReturn:
    """Skip because something the test needs is absent; ``reason`` says what and how to get it
    (e.g. "dockerd is not reachable: run `make docker-up`"). Fails the run under CI=true."""
    pytest.skip(MISSING + reason, allow_module_level=allow_module_level)


def _fail_missing_under_ci(report) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not ci_strict():
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if MISSING not in reason:
        return  # a deliberate skip
    report.outcome = "failed"
    report.longrepr = (f"{reason}\nCI=true: a missing prerequisite fails the run instead of skipping it "
                       "(provide it on the CI machine; see skip_missing in tests/conftest.py)")


# Area markers from the module's name (a convention, not a hand-kept list): `make client-test` runs `-m client`.
AREA_MARKERS = {"client": ("test_webclient_", "test_client_")}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, prefixes in AREA_MARKERS.items():
            if item.path.name.startswith(prefixes):
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_missing_under_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a module-level skip_missing(..., allow_module_level=True)
    _fail_missing_under_ci(report)
    return report


class MotoServer:
    """A real moto S3 HTTP server, stoppable and restartable (for outage tests). On loopback by default; the
    Swarm tests bind it to the host's docker bridge address so containers can reach it too."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.endpoint_url = f"http://{host}:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        self.proc = subprocess.Popen(
            [exe, "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, host=self.host)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # moto_server may ignore SIGTERM
            self.proc.wait(timeout=10)
        self.proc = None

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"))


@pytest.fixture(scope="session", autouse=True)
def api_keys_file(tmp_path_factory) -> Path:
    """Every test reads its API keys from a session-private key-hash file (one key, "tests"), never from the
    developer's .dkt/secrets: a fresh clone (CI) has no key file, and a test must not depend on one. A test
    that needs its own keys points DKT_API_KEYS_FILE elsewhere with monkeypatch."""
    from dkt_core.serving.apikeys import create_key

    path = tmp_path_factory.mktemp("secrets") / "api_keys.json"
    create_key(path, "tests")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DKT_API_KEYS_FILE", str(path))
        yield path


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """Environment pointing dkt_core's S3 settings at a clean moto server; yields the S3Settings."""
    from dkt_core.storage.s3 import S3Settings

    moto_server.reset()
    monkeypatch.setenv("DKT_S3_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("DKT_S3_BUCKET", "dkt-test")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return S3Settings.from_env()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "assist2009_dev.csv.gz").exists():
        skip_missing(f"real data folder {SHARED_DATA} is absent: put shared/data beside the clone "
                     "or set DKT_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_log():
    """A small synthetic log (typed, sorted per user by time): 60 users, ~18k rows."""
    from dkt_core.data.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(users=60, seed=7, tests=80, tags=30))


@pytest.fixture(scope="session")
def tiny_log_csv(tiny_log, tmp_path_factory) -> Path:
    from dkt_core.data.simulate import write_log

    path = tmp_path_factory.mktemp("logs") / "tiny.csv"
    write_log(tiny_log, str(path))
    return path


CHROMEDRIVER = "/usr/bin/chromedriver"


def headless_chromium(profile: Path, *args: str, page_load_timeout: float = 30):
    """Debian's Chromium, headless, driven by its chromedriver (a missing browser is a missing prerequisite:
    ``make browser-deps``); the caller quits it."""
    if not (Path(CHROMEDRIVER).exists() and shutil.which("chromium")):
        skip_missing("Debian chromium/chromium-driver are missing: run `make browser-deps`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", *args):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(page_load_timeout)
    return driver
