"""The student web client in real headless Chromium, served by gunicorn (2 workers) on loopback, logging
to a real moto S3 server: sign up, log out, log in, answer three questions, check the page, then check S3
holds exactly those three interactions under the account's userID. Needs Debian's chromium +
chromium-driver (`make browser-deps`)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests

from dkt_core.storage.s3 import ensure_bucket, list_keys, s3_client
from dkt_core.webclient.bank import CHOICES, SEED_COLUMNS, build_bank
from tests.conftest import skip_missing

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMEDRIVER = "/usr/bin/chromedriver"
TEST_ID = "T1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def inference_url() -> str:
    """The inference service as the client sees it; here: a loopback port nothing listens on (down)."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture
def bank(tmp_path):
    rows = [("u", f"i{n}", TEST_ID, 1, "2020-01-01 00:00:00", f"k{n % 2}") for n in range(4) for _ in range(4 - n)]
    path = tmp_path / "bank.json"
    b = build_bank(pd.DataFrame(rows, columns=SEED_COLUMNS), answer_secret=b"browser-test secret 0123456789abcdef")
    b.save(path)
    return b, path


@pytest.fixture
def start_client(tmp_path, s3_env, bank):
    procs: list[subprocess.Popen] = []
    ensure_bucket(s3_client(s3_env), s3_env.bucket)

    def start(api_url: str, api_key_file: Path | None = None) -> str:
        port = _free_port()
        env = {**os.environ, "DKT_HOME": str(tmp_path), "DKT_CLIENT_PORT": str(port), "DKT_CLIENT_WORKERS": "2",
               "DKT_CLIENT_BANK": str(bank[1]), "DKT_CLIENT_SPOOL_DIR": str(tmp_path / "spool"),
               "DKT_CLIENT_STATE_DB": str(tmp_path / "state.sqlite"), "DKT_API_URL": api_url,
               "DKT_API_TIMEOUT_S": "3", "DKT_SPOOL_MAX_AGE_S": "1", "DKT_FLUSH_INTERVAL_S": "0.5",
               **({"DKT_CLIENT_API_KEY_FILE": str(api_key_file)} if api_key_file else {})}
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        proc = subprocess.Popen([gunicorn, "-c", "python:dkt_core.webclient.gunicorn_conf",
                                 "dkt_core.webclient.wsgi:app"], env=env, start_new_session=True,
                                stdout=open(tmp_path / "gunicorn.log", "ab"), stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    return url
            except requests.RequestException:
                time.sleep(0.2)
        raise TimeoutError(f"gunicorn did not answer on {url}")

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMEDRIVER).exists() and shutil.which("chromium")):
        skip_missing("Debian chromium/chromium-driver are missing: run `make browser-deps`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _answer_three(driver, url: str, bank, user: str) -> tuple[str, list[tuple[str, int]]]:
    """Sign up, log out and in again, start the test in the browser and answer 3 questions: right, wrong,
    right. Returns the account's userID and the (item, code) answered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def submit(button_id: str) -> None:
        # A form post returns before the next page loads: wait until the old page is gone.
        from selenium.common.exceptions import WebDriverException

        old = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, button_id).click()
        # Mid-navigation Chromium may answer "node does not belong to the document" instead of "stale":
        # keep polling until the old page is really gone.
        WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(ec.staleness_of(old))
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def element(element_id: str):
        # the next page may still be loading after submit() saw the old one go: wait for the element itself
        try:
            return WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.ID, element_id)))
        except Exception as exc:  # noqa: BLE001 - say which page the browser was on
            raise AssertionError(f"#{element_id} not on {driver.current_url}: {driver.page_source[:600]}") from exc

    password = "browser password 1"
    driver.get(url)  # not logged in: the login page
    assert element("login-form") and "/login" in driver.current_url
    driver.find_element(By.ID, "signup-link").click()
    element("signup-form")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "password2").send_keys(password)
    submit("signup")
    assert element("who").text == user
    user_id = element("user-id").text
    submit("logout")
    element("login-form")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    submit("login")
    assert element("user-id").text == user_id  # the same account after logging in again
    Select(driver.find_element(By.ID, "test")).select_by_value(TEST_ID)
    submit("start")
    done = []
    for n, correct in enumerate([True, False, True]):
        assert element("progress").text == f"Question {n + 1} of 4"
        item = driver.find_element(By.ID, "question-text").get_attribute("data-item")
        key = bank.items[item].answer
        choice = key if correct else next(c for c in CHOICES if c != key)
        driver.find_element(By.ID, f"choice-{choice}").click()
        submit("submit")
        feedback = element("feedback")
        assert feedback.get_attribute("data-answer-code") == str(int(correct))
        assert ("Correct" in feedback.text) is correct
        done.append((item, int(correct)))
    assert element("progress").text == "Question 4 of 4"
    assert user not in driver.current_url and user_id not in driver.current_url  # no student in any URL
    return user_id, done


def _s3_interactions(settings, want: int, timeout: float = 20.0) -> list[dict]:
    client = s3_client(settings)
    deadline = time.monotonic() + timeout
    while True:
        rows = []
        for key in list_keys(client, settings.bucket, "interactions/"):
            body = client.get_object(Bucket=settings.bucket, Key=key)["Body"].read().decode()
            rows.extend(csv.DictReader(io.StringIO(body)))
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _check_s3(s3_env, bank, user_id: str, done, t0: datetime) -> None:
    rows = _s3_interactions(s3_env, want=3)
    got = sorted((r["userID"], r["assessmentItemID"], r["testId"], int(r["answerCode"]), r["KnowledgeTag"])
                 for r in rows)
    want = sorted((user_id, item, TEST_ID, code, bank.items[item].tag) for item, code in done)
    assert got == want  # exactly those three: none lost, none twice
    for r in rows:  # the server's clock, in the seed format
        ts = datetime.strptime(r["Timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        assert t0 - timedelta(seconds=1) <= ts <= datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(1.5)  # a few more flush passes must not send anything again
    assert len(_s3_interactions(s3_env, want=3, timeout=0)) == 3


def test_three_answers_reach_s3_while_predictions_are_down(browser, start_client, inference_url, bank, s3_env):
    from selenium.webdriver.common.by import By

    t0 = datetime.now(UTC).replace(microsecond=0)
    url = start_client(inference_url)
    user_id, done = _answer_three(browser, url, bank[0], "student-1")
    assert "Predictions are unavailable" in browser.find_element(By.ID, "prediction-unavailable").text
    assert not browser.find_elements(By.ID, "knowledge-chart")
    _check_s3(s3_env, bank[0], user_id, done, t0)


def test_three_answers_show_prediction_and_knowledge_chart(browser, start_client, inference_server_url, bank,
                                                           s3_env, inference_server):
    from selenium.webdriver.common.by import By

    t0 = datetime.now(UTC).replace(microsecond=0)
    url = start_client(inference_server_url, inference_server.key_file)  # the client's own API key (issue 12)
    user_id, done = _answer_three(browser, url, bank[0], "student-2")
    p = float(browser.find_element(By.ID, "prediction").get_attribute("data-probability"))
    assert 0.0 <= p <= 1.0
    bars = browser.find_elements(By.CSS_SELECTOR, "#knowledge-chart g.bar")
    assert bars and all(0.0 <= float(b.get_attribute("data-p")) <= 1.0 for b in bars)
    assert browser.find_element(By.ID, "knowledge-chart").is_displayed()
    _check_s3(s3_env, bank[0], user_id, done, t0)
