"""Flask app through its test client: validation, grading, spooling, and the inference panel against a
loopback HTTP server that speaks the dkt_core.api contract (the real BentoML service is tested elsewhere).
Every quiz request is made by a signed-up account (accounts and their doors: test_webclient_accounts.py)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dkt_core.api import KnowledgeStateRequest, PredictRequest
from dkt_core.webclient.app import create_app
from dkt_core.webclient.bank import CHOICES, Item, QuestionBank, answer_for
from dkt_core.webclient.settings import ClientSettings
from tests.conftest import free_port
from tests.webclient_flask import answer, csrf, sign_up

SECRET = b"unit-test answer-key secret 0123456789"


def _bank() -> QuestionBank:
    items = {f"i{n}": Item(f"i{n}", "T1", f"k{n % 2}", f"text {n}", answer_for(f"i{n}", SECRET)) for n in range(3)}
    return QuestionBank(items, {"T1": ["i0", "i1", "i2"]})


class ContractServer(ThreadingHTTPServer):
    """Answers /predict and /knowledge_state per the API models, validating every request; ``delay_s``
    makes it slow (each request is recorded on arrival; ``release`` ends every wait at once). Probabilities
    are a fixed function of the history length, so pages are checkable."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s, self.requests, self.release = delay_s, [], threading.Event()
        self.chance: dict[str, float] = {}  # per-item P for /predict targets (else the history rule)
        super().__init__(("127.0.0.1", free_port()), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        if self.server.delay_s:
            self.server.release.wait(self.server.delay_s)
        if self.path == "/predict":
            req = PredictRequest.model_validate(body)
            out = {"model_version": "m1", "results": [
                {"userID": s.userID, "probabilities": [self.server.chance.get(t["assessmentItemID"],
                                                                              0.25 + 0.1 * len(s.history))
                                                       for t in s.targets]}
                for s in req.students]}
        else:
            req = KnowledgeStateRequest.model_validate(body)
            tags = {"k0": 0.5, "k1": 0.75, "zz": 0.1}
            for h in req.history:  # other tags: a chance that moves with the number of answers
                tags.setdefault(h["KnowledgeTag"], min(0.95, 0.4 + 0.05 * len(req.history)))
            out = {"model_version": "m1", "userID": req.userID, "tags": tags}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def make_client(tmp_path, s3_env):
    apps = []

    def make(api_url: str, timeout_s: float = 1.0, bank: QuestionBank | None = None, **overrides):
        (bank or _bank()).save(tmp_path / "bank.json")
        settings = ClientSettings(bank_path=tmp_path / "bank.json", spool_dir=tmp_path / "spool",
                                  state_db=tmp_path / "state.sqlite", api_url=api_url, api_timeout_s=timeout_s,
                                  spool_max_rows=100, spool_max_age_s=3600, **overrides)
        app = create_app(settings, start_flusher=False)
        apps.append(app)
        return app, app.test_client()

    return make


def key(item: str) -> str:
    return answer_for(item, SECRET)


def _spooled(app) -> list[list[str]]:
    spool = app.extensions["dkt"]["spool"]
    spool.seal()
    return [line.split(",") for b in spool.sealed_batches() for line in b.read_text().splitlines()[1:]]


def test_grading_spooling_and_progress(make_client):
    app, c = make_client(f"http://127.0.0.1:{free_port()}")  # nothing listens: service down
    uid = sign_up(c, "stu-1")
    right = key("i0")
    wrong = next(x for x in CHOICES if x != key("i1"))
    r = answer(c, "i0", right)
    assert r.status_code == 303 and r.headers["Location"].endswith("/quiz/T1?answered=i0")
    page = c.get(r.headers["Location"]).get_data(as_text=True)
    assert 'data-answer-code="1"' in page and "Question 2 of 3" in page
    assert "Predictions are unavailable" in page
    assert answer(c, "i1", wrong).status_code == 303
    assert answer(c, "i1", right).status_code == 409  # already answered: not logged twice
    rows = _spooled(app)
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [(uid, "i0", "T1", "1", "k0"),
                                                             (uid, "i1", "T1", "0", "k1")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[4]) for r in rows)
    r = answer(c, "i2", key("i2"))
    assert r.headers["Location"].endswith("/results/test/T1")  # the sitting is complete: its results
    page = c.get("/quiz/T1").get_data(as_text=True)
    # issue 13: a finished test does not silently restart; the retake is offered and explicit
    assert "You finished this test: 2 of 3 correct" in page and "Question 1 of 3" not in page
    assert 'id="retake"' in page
    r = c.post("/quiz/T1/retake", data={"csrf": csrf(c, "/quiz/T1")})
    assert r.status_code == 303
    assert "Question 1 of 3" in c.get("/quiz/T1").get_data(as_text=True)


@pytest.mark.parametrize("path,form,code,msg", [
    ("/start", {"test": "T404"}, 404, "is not in the question bank"),
    ("/quiz/T1/answer", {"item": "i0", "choice": "Z"}, 400, "Pick one of the choices"),
    ("/quiz/T1/answer", {"item": "i9", "choice": "A"}, 400, "is not part of test"),
    ("/quiz/T1/answer", {"item": "i1", "choice": "A"}, 409, "is not the question due"),
    ("/quiz/T404/answer", {"item": "i0", "choice": "A"}, 404, "is not in the question bank"),
])
def test_invalid_input_is_refused_with_a_message(make_client, path, form, code, msg):
    app, c = make_client(f"http://127.0.0.1:{free_port()}")
    sign_up(c, "okay")
    r = c.post(path, data={"csrf": csrf(c, "/"), **form})
    assert r.status_code == code and msg in r.get_data(as_text=True)
    assert _spooled(app) == []


def test_forms_need_the_csrf_token_and_start_assigns_a_test(make_client):
    app, c = make_client(f"http://127.0.0.1:{free_port()}")
    sign_up(c, "okay")
    r = c.post("/start", data={"test": "T1"})
    assert r.status_code == 400 and "reload the page" in r.get_data(as_text=True)
    r = c.post("/start", data={"csrf": "a-token-of-another-session", "test": "T1"})
    assert r.status_code == 400 and "reload the page" in r.get_data(as_text=True)
    page = c.get("/").get_data(as_text=True)
    assert 'data-test="T1"' in page  # tests are listed by subject and grade (issue 13), not in one dropdown
    r = c.post("/start", data={"csrf": csrf(c, "/"), "test": ""})
    assert r.status_code == 303 and r.headers["Location"].endswith("/quiz/T1")
    assert c.get("/healthz").get_json()["items"] == 3


def test_prediction_and_knowledge_chart_from_the_service(make_client):
    server = ContractServer()
    try:
        app, c = make_client(server.url, show_prediction=True)
        uid = sign_up(c, "stu-2")
        page = c.get("/quiz/T1").get_data(as_text=True)
        assert 'data-probability="0.2500"' in page and "knowledge-unavailable" in page  # no history yet
        answer(c, "i0", key("i0"))
        page = c.get("/quiz/T1").get_data(as_text=True)
        assert 'data-probability="0.3500"' in page and "(model m1)" in page
        bars = re.findall(r'data-tag="([^"]+)" data-p="([^"]+)"', page)
        assert bars == [("k0", "0.5000"), ("k1", "0.7500")]  # tags of this test; "zz" is not shown
        path, body = [r for r in server.requests if r[0] == "/predict"][-1]
        (student,) = body["students"]
        assert student["userID"] == uid  # the account's id, as in the spooled rows
        assert student["history"][0]["assessmentItemID"] == "i0"
        assert student["targets"][0]["assessmentItemID"] == "i1"
    finally:
        server.shutdown()


def test_slow_service_times_out_and_the_page_still_works(make_client):
    # The service answers only after 60 s (or when released at the end): a page that waited for it would show
    # a prediction, so "unavailable" proves the 0.3 s timeout ended the call. No clock is read.
    server = ContractServer(delay_s=60)
    try:
        app, c = make_client(server.url, timeout_s=0.3, show_prediction=True)
        sign_up(c, "stu-3")
        page = c.get("/quiz/T1").get_data(as_text=True)
        assert "Predictions are unavailable" in page
        assert [path for path, _ in server.requests] == ["/predict"]  # asked once, then gave up
        again = c.get("/quiz/T1")  # cooldown: no second wait for the timeout
        assert again.status_code == 200 and "Predictions are unavailable" in again.get_data(as_text=True)
        assert len(server.requests) == 1  # the service was not asked again during the cooldown
    finally:
        server.release.set()
        server.shutdown()


def test_an_answer_the_disk_refuses_is_a_503_to_retry_and_stored_nowhere(make_client, monkeypatch, caplog):
    import errno
    import os

    app, c = make_client(f"http://127.0.0.1:{free_port()}")
    uid = sign_up(c, "stu-full")
    real = os.write

    def full_disk(fd, data):
        if uid.encode() in bytes(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    token = csrf(c, "/quiz/T1")
    monkeypatch.setattr(os, "write", full_disk)
    r = c.post("/quiz/T1/answer", data={"csrf": token, "item": "i0", "choice": key("i0")})
    monkeypatch.undo()
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "submit it again" in r.get_data(as_text=True) and "Nothing was recorded" in r.headers["X-Error-Reason"]
    assert "not stored" in caplog.text and "Traceback" not in caplog.text
    assert app.extensions["dkt"]["store"].answered(uid, "T1") == 0
    assert answer(c, "i0", key("i0")).status_code == 303  # the retry is stored, once
    assert [r[:2] for r in _spooled(app)] == [[uid, "i0"]]


def test_error_replies_carry_their_reason_for_the_access_line(make_client):
    app, c = make_client(f"http://127.0.0.1:{free_port()}")
    sign_up(c, "okay")
    r = c.get("/quiz/T404")
    assert r.status_code == 404 and r.headers["X-Error-Reason"] == "Test 'T404' is not in the question bank; pick " \
        "one from the list."
    assert c.get("/").headers.get("X-Error-Reason") is None
