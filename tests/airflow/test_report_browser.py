"""An engineer logs into Airflow and opens the latest run's report from the UI (issue 13 item 5's proof).

One dag.test() run of dkt_retrain writes a report to a real moto S3; then a real ``airflow api-server`` on a
free loopback port serves the UI, and headless Chromium: asks for the report without a session (sent to
Airflow's login page), logs in as the simple auth manager's user, opens "Browse → DKT run reports" in
Airflow's navigation, follows "open the latest" inside the embedded page and finds the report's ROC plot
loaded; the Assets view lists the curated data and the champion. Screenshots: $DKT_SCREENSHOT_DIR (docs/screenshots/ via make client-screenshots)
airflow-run-reports.png (the list), airflow-run-report.png (the report) and airflow-assets.png."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dagutil import TINY, states, upload

from devtools.ports import free_port
from tests.conftest import headless_chromium

pytestmark = [pytest.mark.airflow, pytest.mark.browser]

PASSWORD = "browser-test-password"


@pytest.fixture
def api_server(env, airflow_home, tmp_path):
    """`airflow api-server` on 127.0.0.1:<free port>, the test's S3 connection, one admin user."""
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"engineer": PASSWORD}))
    port = free_port()
    server_env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "engineer:admin",
                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                  "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
                  "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}", "AIRFLOW__API__HOST": "127.0.0.1",
                  "AIRFLOW__API__PORT": str(port)}
    log = tmp_path / "api-server.log"
    exe = Path(sys.executable).parent / "airflow"
    proc = subprocess.Popen([str(exe), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=server_env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the API server did not answer on {url}:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chrome-profile", "--window-size=1400,1000", page_load_timeout=120)
    yield driver
    driver.quit()


def _open_from_browse_menu(label: str):
    """A wait condition: done when the plugin page is open; otherwise opens Browse and clicks ``label``.

    One click each is not enough: the React UI re-renders its navigation while its first queries land (on
    2 busy cores that can be seconds after the page looks ready), which closes an open menu or swaps the
    element under a click, and the URL then never changes (CI, once). So each poll looks again."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def step(driver) -> bool:
        if driver.current_url.rstrip("/").endswith("/plugin/dkt-reports"):
            return True
        try:
            items = [e for e in driver.find_elements(By.XPATH, f"//*[@role='menuitem' or self::a]"
                                                               f"[normalize-space()='{label}']") if e.is_displayed()]
            if items:
                items[0].click()
            else:
                driver.find_element(By.XPATH, "//button[normalize-space()='Browse']").click()
        except WebDriverException:
            pass  # not there yet, stale or covered: the next poll looks again
        return driver.current_url.rstrip("/").endswith("/plugin/dkt-reports")

    return step


def test_engineer_logs_in_and_opens_the_latest_report_with_its_roc_plot(dagbag, env, s3_env, logs, api_server,
                                                                       browser, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    client, bucket = env, s3_env.bucket
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", logs[0])
    run = dagbag.dags["dkt_retrain"].test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(run.state) == "success", states(run)
    version = json.loads(client.get_object(Bucket=bucket, Key="models/champion.json")["Body"].read())["model_version"]

    wait = WebDriverWait(browser, 120)  # the React UI on 2 busy cores (CI runs the suite alone; it once took > 60 s)
    # no session: the report sends the browser to Airflow's login page
    browser.get(f"{api_server}/dkt-reports/latest")
    wait.until(lambda d: "/auth/login" in d.current_url)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("engineer")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/login" not in d.current_url)

    # Airflow's navigation: Browse → DKT run reports (the plugin's external view, embedded in the UI)
    browser.get(f"{api_server}/")
    try:
        WebDriverWait(browser, 180, poll_frequency=3).until(_open_from_browse_menu("DKT run reports"))
    except TimeoutException:
        (tmp_path / "page.html").write_text(browser.page_source)  # what the UI showed instead, for the log
        browser.save_screenshot(str(tmp_path / "menu.png"))
        raise AssertionError(f"Browse → DKT run reports never reached /plugin/dkt-reports (now at "
                             f"{browser.current_url}); the page: {tmp_path / 'page.html'}") from None
    wait.until(ec.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
    wait.until(ec.presence_of_element_located((By.LINK_TEXT, version)))
    assert "PROMOTE" in browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()
    # like the client's browser test: $DKT_SCREENSHOT_DIR (make client-screenshots: docs/screenshots), else the
    # test's tmp dir, so a test run never rewrites tracked files
    shots = Path(os.environ.get("DKT_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "airflow-run-reports.png"))
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    browser.find_element(By.LINK_TEXT, "open the latest").click()

    roc = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "img[alt=ROC]")))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", roc))
    assert browser.execute_script("return arguments[0].naturalWidth", roc) > 100  # the PNG decoded
    assert browser.execute_script("return location.pathname") == f"/dkt-reports/models/{version}/report.html"
    browser.execute_script("arguments[0].scrollIntoView()", roc)  # the plot in the screenshot
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "airflow-run-report.png"))

    # the Assets view lists what the run produced: the curated data and the champion (task outlets)
    browser.get(f"{api_server}/assets")
    for name in ("dkt_curated", "dkt_champion"):
        wait.until(ec.presence_of_element_located((By.XPATH, f"//*[normalize-space()='{name}']")))
    browser.save_screenshot(str(shots / "airflow-assets.png"))
