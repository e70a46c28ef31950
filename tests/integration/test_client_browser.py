"""The student web client in real headless Chromium, served by gunicorn (2 workers) on loopback, logging
to a real moto S3 server: sign up, log out, log in, answer three questions, check the page, then check S3
holds exactly those three interactions under the account's userID. Issue 13: a student practises
(adaptive picks from the real inference service), sees the results and progress pages, on a desktop and a
390 px viewport (no horizontal overflow); a teacher opens the class view and a student's page. Each page
is saved as a PNG under $DKT_SCREENSHOT_DIR (default: the test's tmp dir; `make client-screenshots` writes
docs/screenshots/). Needs Debian's chromium + chromium-driver (`make browser-deps`)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from devtools.services import start_client as launch_client
from dkt_core.storage.s3 import ensure_bucket, list_keys, s3_client
from dkt_core.webclient.bank import CHOICES, SEED_COLUMNS, build_bank
from tests.conftest import free_port, headless_chromium

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TEST_ID = "T1"


@pytest.fixture
def inference_url() -> str:
    """The inference service as the client sees it; here: a loopback port nothing listens on (down)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def bank(tmp_path):
    rows = [("u", f"i{n}", TEST_ID, 1, "2020-01-01 00:00:00", f"k{n % 2}") for n in range(4) for _ in range(4 - n)]
    path = tmp_path / "bank.json"
    b = build_bank(pd.DataFrame(rows, columns=SEED_COLUMNS), answer_secret=b"browser-test secret 0123456789abcdef")
    b.save(path)
    return b, path


@pytest.fixture
def start_client(tmp_path, s3_env, bank):
    """Start the client under gunicorn (devtools' launcher); returns its URL. ``start_client.spool``: its spool."""
    procs: list[subprocess.Popen] = []
    ensure_bucket(s3_client(s3_env), s3_env.bucket)

    def start(api_url: str, api_key_file: Path | None = None, bank_path: Path | None = None, **extra: str) -> str:
        env = {**extra, "DKT_API_TIMEOUT_S": "3", "DKT_SPOOL_MAX_AGE_S": "1", "DKT_FLUSH_INTERVAL_S": "0.5",
               **({"DKT_CLIENT_API_KEY_FILE": str(api_key_file)} if api_key_file else {})}
        served = launch_client(tmp_path, bank=bank_path or bank[1], api_url=api_url, log=tmp_path / "gunicorn.log",
                               env=env)
        procs.append(served.proc)
        return served.url

    start.spool = tmp_path / "spool"  # where launch_client puts the spool (home / "spool")
    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chrome-profile", page_load_timeout=30)
    yield driver
    driver.quit()


def _submit(driver, button_id: str) -> None:
    """Click a submit button and wait for the next page: a form post returns before it loads."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, button_id).click()
    # Mid-navigation Chromium may answer "node does not belong to the document" instead of "stale":
    # keep polling until the old page is really gone.
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(ec.staleness_of(old))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _element(driver, element_id: str):
    """The element, waiting for it: the next page may still be loading after _submit saw the old one go."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.ID, element_id)))
    except Exception as exc:  # noqa: BLE001 - say which page the browser was on
        raise AssertionError(f"#{element_id} not on {driver.current_url}: {driver.page_source[:600]}") from exc


def _answer_three(driver, url: str, bank, user: str) -> tuple[str, list[tuple[str, int]]]:
    """Sign up, log out and in again, start the test in the browser and answer 3 questions: right, wrong,
    right. Returns the account's userID and the (item, code) answered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def submit(button_id: str) -> None:
        _submit(driver, button_id)

    def element(element_id: str):
        return _element(driver, element_id)

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
    old = driver.find_element(By.TAG_NAME, "html")
    link = driver.find_element(By.CSS_SELECTOR, f'a.test-link[data-test="{TEST_ID}"]')  # tests by subject/grade
    driver.execute_script("arguments[0].closest('details').open = true", link)  # its group, unfolded
    link.click()
    WebDriverWait(driver, 20).until(ec.staleness_of(old))
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


def _check_s3(s3_env, bank, user_id: str, done, t0: datetime, spool: Path) -> None:
    rows = _s3_interactions(s3_env, want=3)
    got = sorted((r["userID"], r["assessmentItemID"], r["testId"], int(r["answerCode"]), r["KnowledgeTag"])
                 for r in rows)
    want = sorted((user_id, item, TEST_ID, code, bank.items[item].tag) for item, code in done)
    assert got == want  # exactly those three: none lost, none twice
    for r in rows:  # the server's clock, in the seed format
        ts = datetime.strptime(r["Timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        assert t0 - timedelta(seconds=1) <= ts <= datetime.now(UTC) + timedelta(seconds=1)
    _wait_spool_empty(spool)  # every batch flushed and gone: nothing is left that could be sent again
    assert len(_s3_interactions(s3_env, want=3, timeout=0)) == 3


def _wait_spool_empty(spool: Path, timeout: float = 20.0) -> None:
    """Wait until the spool holds no batch (active or sealed): the flusher deletes a batch only after S3 has it."""
    deadline = time.monotonic() + timeout
    while list(spool.glob("*/*.csv")):
        assert time.monotonic() < deadline, f"batches still in the spool: {sorted(spool.glob('*/*.csv'))}"
        time.sleep(0.1)


def test_three_answers_reach_s3_while_predictions_are_down(browser, start_client, inference_url, bank, s3_env):
    from selenium.webdriver.common.by import By

    t0 = datetime.now(UTC).replace(microsecond=0)
    url = start_client(inference_url)
    user_id, done = _answer_three(browser, url, bank[0], "student-1")
    assert "Predictions are unavailable" in browser.find_element(By.ID, "prediction-unavailable").text
    assert not browser.find_elements(By.ID, "knowledge-chart")
    _check_s3(s3_env, bank[0], user_id, done, t0, start_client.spool)


def test_three_answers_show_prediction_and_knowledge_chart(browser, start_client, inference_server_url, bank,
                                                           s3_env, inference_server):
    from selenium.webdriver.common.by import By

    t0 = datetime.now(UTC).replace(microsecond=0)
    url = start_client(inference_server_url, inference_server.key_file,  # the client's own API key (issue 12)
                       DKT_CLIENT_SHOW_PREDICTION="1")  # the chance before answering is shown only when set
    user_id, done = _answer_three(browser, url, bank[0], "student-2")
    shown = browser.find_element(By.ID, "prediction").get_attribute("data-probability")
    p = float(shown)
    assert 0.0 <= p <= 1.0
    # The shown chance is the service's answer for this student: question 4 given the 3 answers, asked here
    # directly. Its Timestamp is the second the page was made, between the last answer and now: one of
    # those seconds must give exactly the shown value.
    item = bank[0].items[browser.find_element(By.ID, "question-text").get_attribute("data-item")]
    rows = {r["assessmentItemID"]: r for r in _s3_interactions(s3_env, want=3)}
    history = [{"assessmentItemID": i, "testId": TEST_ID, "KnowledgeTag": rows[i]["KnowledgeTag"],
                "Timestamp": rows[i]["Timestamp"], "answerCode": code} for i, code in done]
    last = datetime.strptime(history[-1]["Timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    direct = set()
    for s in range(int((datetime.now(UTC) - last).total_seconds()) + 2):
        target = {"assessmentItemID": item.item_id, "testId": item.test_id, "KnowledgeTag": item.tag,
                  "Timestamp": (last + timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S")}
        r = inference_server.api.post(f"{inference_server_url}/predict", timeout=10, json={
            "students": [{"userID": user_id, "history": history, "targets": [target]}]})
        assert r.status_code == 200, r.text
        direct.add(f"{r.json()['results'][0]['probabilities'][0]:.4f}")
    assert shown in direct, (shown, sorted(direct))
    bars = browser.find_elements(By.CSS_SELECTOR, "#knowledge-chart g.bar")
    assert bars and all(0.0 <= float(b.get_attribute("data-p")) <= 1.0 for b in bars)
    assert browser.find_element(By.ID, "knowledge-chart").is_displayed()
    _check_s3(s3_env, bank[0], user_id, done, t0, start_client.spool)


# --- issue 13: practice, results, progress, class view; desktop and a 390 px phone ---------------------------
VIEWPORTS = {"desktop": (1100, 900), "phone": (390, 844)}


@pytest.fixture
def generated_bank(tmp_path):
    """A generated bank (real questions) over the simulated catalog the served model was trained on."""
    from dkt_core.data.simulate import SimulationConfig, simulate
    from dkt_core.webclient.bank import with_generated_content

    df = simulate(SimulationConfig(users=30, seed=5, tests=60, tags=40))
    b = with_generated_content(build_bank(df, answer_secret=b"browser-test secret 0123456789abcdef",
                                          max_items_per_test=5))
    path = tmp_path / "generated-bank.json"
    b.save(path)
    return b, path


def _viewport(driver, name: str) -> None:
    width, height = VIEWPORTS[name]
    # the page's viewport exactly (a window size would include browser chrome in some modes)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": name == "phone"})


def _screenshot_dir(tmp_path) -> Path:
    folder = Path(os.environ.get("DKT_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_page(driver, shots: Path, name: str, viewport: str) -> None:
    """No horizontal overflow at the viewport's width, every form control labelled, then a small PNG."""
    from selenium.webdriver.common.by import By

    width = VIEWPORTS[viewport][0]
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"{driver.current_url} is {scroll} px wide at a {width} px viewport"
    unlabelled = driver.execute_script("""
        return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name)""")
    assert unlabelled == [], f"controls without a label on {driver.current_url}: {unlabelled}"
    assert not driver.find_elements(By.CSS_SELECTOR, "script[src], link[href^='http']")  # no CDN, no JS library
    path = shots / f"{name}-{viewport}.png"
    driver.save_screenshot(str(path))
    try:  # a 64-colour palette keeps each PNG small (pages are text and flat colours)
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
    except ImportError:
        pass


def _sign_up(driver, url: str, user: str, *, role: str = "student", class_code: str = "") -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(f"{url}/signup")
    _element(driver, "signup-form")
    driver.find_element(By.ID, "username").send_keys(user)
    for field in ("password", "password2"):
        driver.find_element(By.ID, field).send_keys("browser password 1")
    Select(driver.find_element(By.ID, "role")).select_by_value(role)
    if class_code:
        driver.find_element(By.ID, "class-code").send_keys(class_code)
    _submit(driver, "signup")
    assert _element(driver, "who").text == user
    return driver.find_element(By.ID, "user-id").text if role == "student" else ""


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_student_practises_and_sees_results_and_progress(browser, start_client, inference_server, generated_bank,
                                                         tmp_path, viewport):
    from selenium.webdriver.common.by import By

    bank, path = generated_bank
    shots = _screenshot_dir(tmp_path)
    url = start_client(inference_server.url, inference_server.key_file, bank_path=path,
                       DKT_CLIENT_PRACTICE_LENGTH="4")
    _viewport(browser, viewport)
    _sign_up(browser, url, f"pia-{viewport}")
    assert browser.find_elements(By.CSS_SELECTOR, "details.group")  # tests grouped by subject and grade
    assert not browser.find_elements(By.CSS_SELECTOR, "select#test")  # no 1,534-entry dropdown
    _check_page(browser, shots, "start", viewport)
    _submit(browser, "practice")  # "Practice next", everything
    seen = []
    for n in range(4):
        rule = _element(browser, "pick-rule")
        assert rule.get_attribute("data-rule") == "adaptive", rule.text  # the model chose (service is up)
        item = browser.find_element(By.ID, "question-text").get_attribute("data-item")
        assert bank.items[item].text == browser.find_element(By.ID, "question-text").text  # real text
        assert item not in seen
        seen.append(item)
        key = bank.items[item].answer
        choice = key if n % 2 == 0 else next(c for c in CHOICES if c != key)
        browser.find_element(By.ID, f"choice-{choice}").click()
        if n == 0:
            _check_page(browser, shots, "practice", viewport)
        _submit(browser, "submit")
        if n == 1:  # a wrong answer: the right one and the explanation
            feedback = _element(browser, "feedback")
            assert feedback.get_attribute("data-answer-code") == "0"
            assert bank.items[item].explanation in feedback.text
            _check_page(browser, shots, "practice-feedback", viewport)
    assert "/results/practice/" in browser.current_url
    score = _element(browser, "score")
    assert (score.get_attribute("data-correct"), score.get_attribute("data-n")) == ("2", "4")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results-table tr.result")
    assert [r.get_attribute("data-item") for r in rows] == seen
    for r in rows:  # every line shows the right answer
        item = bank.items[r.get_attribute("data-item")]
        assert item.choices[CHOICES.index(item.answer)] in r.find_element(By.CSS_SELECTOR, ".right-answer").text
    _check_page(browser, shots, "results", viewport)
    browser.find_element(By.ID, "to-progress").click()
    chart = _element(browser, "mastery-chart")
    lines = chart.find_elements(By.CSS_SELECTOR, "svg[viewBox] g.line")
    assert lines and max(int(g.get_attribute("data-points")) for g in lines) >= 2  # over time, not one point
    assert chart.size["width"] <= VIEWPORTS[viewport][0]
    assert "skill" in chart.find_element(By.CSS_SELECTOR, "g.line").get_attribute("data-skill")  # named
    assert browser.find_elements(By.CSS_SELECTOR, "#sessions tr.practice-row")
    _check_page(browser, shots, "progress", viewport)


def test_teacher_opens_the_class_view(browser, start_client, inference_server, generated_bank, tmp_path):
    import requests as http_requests
    from selenium.webdriver.common.by import By

    from tests.webclient_http import sign_up as http_sign_up

    bank, path = generated_bank
    shots = _screenshot_dir(tmp_path)
    url = start_client(inference_server.url, inference_server.key_file, bank_path=path)
    _viewport(browser, "desktop")
    _sign_up(browser, url, "ms-teach", role="teacher")
    browser.get(f"{url}/teacher")
    code = _element(browser, "class-code").text
    tests = sorted(bank.tests)[:3]
    students = {}
    for n, name in enumerate(("amy", "ben", "cat")):  # three students answer three tests over plain HTTP
        session = http_requests.Session()
        students[name] = http_sign_up(session, url, name, class_code=code)
        for k, (test, item) in enumerate((t, i) for t in tests for i in bank.tests[t]):
            page = session.get(f"{url}/quiz/{test}", timeout=10).text
            token = page.split('name="csrf" value="')[1].split('"')[0]
            right = (k + n) % (n + 1) == 0  # amy all right, ben about half, cat about a third
            key = bank.items[item].answer
            choice = key if right else next(c for c in CHOICES if c != key)
            r = session.post(f"{url}/quiz/{test}/answer", data={"csrf": token, "item": item, "choice": choice},
                             timeout=10, allow_redirects=False)
            assert r.status_code == 303, r.text
    for viewport in ("desktop", "phone"):
        _viewport(browser, viewport)
        browser.get(f"{url}/teacher")
        heat = _element(browser, "heatmap")
        rows = heat.find_elements(By.CSS_SELECTOR, "tr.heat-row")
        assert [r.get_attribute("data-user") for r in rows] == [students[n] for n in ("amy", "ben", "cat")]
        cells = heat.find_elements(By.CSS_SELECTOR, "td.cell[data-p]")
        assert any(c.get_attribute("data-p") for c in cells)  # the model's knowledge state
        _check_page(browser, shots, "teacher", viewport)
        browser.find_element(By.CSS_SELECTOR, f'tr.heat-row[data-user="{students["ben"]}"] a').click()
        assert _element(browser, "student-id").text == students["ben"]
        assert browser.find_elements(By.CSS_SELECTOR, "#sessions tr.sitting")
        _check_page(browser, shots, "teacher-student", viewport)
    csv_text = http_requests.get(f"{url}/teacher/class.csv", timeout=10, cookies={
        c["name"]: c["value"] for c in browser.get_cookies()}).text
    assert csv_text.splitlines()[0].startswith("username,userID,answers") and len(csv_text.splitlines()) == 4
