"""Flask app factory of the student web client (served by gunicorn: ``dkt_core.webclient.wsgi:app``).

Routes: ``GET /`` (user id + test), ``POST /start``, ``GET /quiz/<user>/<test>`` (next item, prediction,
knowledge view), ``POST /quiz/<user>/<test>/answer`` (grade, spool, record), ``GET /healthz``.
Every input is validated; forms carry a double-submit CSRF token (no server secret needed).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
from datetime import UTC, datetime

from flask import Flask, abort, make_response, redirect, render_template, request, url_for

from dkt_core.data.schema import TIMESTAMP_FORMAT
from dkt_core.webclient.bank import CHOICES, SEED_COLUMNS, QuestionBank
from dkt_core.webclient.flusher import FlushWorker
from dkt_core.webclient.history import StaleAnswer, StateStore
from dkt_core.webclient.inference import InferenceClient
from dkt_core.webclient.settings import ClientSettings
from dkt_core.webclient.spool import Spool, SpoolWriteError

log = logging.getLogger(__name__)
USER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_CHART_TAGS = 12
CSRF_COOKIE = "dkt_csrf"
REASON_HEADER = "X-Error-Reason"  # short reason of an error reply, logged on its access line


def _one_line(text: str, limit: int = 200) -> str:
    """Printable ASCII on one line (a header value and a log field), at most ``limit`` characters."""
    text = " ".join(text.split()).encode("ascii", "backslashreplace").decode()
    return text if len(text) <= limit else text[:limit] + "..."


def _now() -> str:
    # The server's clock (UTC) is the Timestamp of record: never the browser's, never random.
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def _valid_user(user: str | None) -> str:
    if not user or not USER_RE.match(user):
        abort(400, "User id must be 1-64 characters: letters, digits, '.', '_' or '-'.")
    return user


def create_app(settings: ClientSettings | None = None, *, start_flusher: bool = True) -> Flask:
    settings = settings or ClientSettings.from_env()
    bank = QuestionBank.load(settings.bank_path)
    store = StateStore(settings.state_db)
    spool = Spool(settings.spool_dir, max_rows=settings.spool_max_rows, max_age_s=settings.spool_max_age_s)
    flusher = FlushWorker(spool, interval_s=settings.flush_interval_s, create_bucket=settings.create_bucket,
                          committed=store.has_row)
    inference = InferenceClient(settings.api_url, timeout_s=settings.api_timeout_s)

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024, DEBUG=False, TESTING=False)
    app.extensions["dkt"] = {"bank": bank, "store": store, "spool": spool, "flusher": flusher,
                             "inference": inference, "settings": settings}
    if start_flusher:
        flusher.start()
        atexit.register(flusher.stop)  # gunicorn workers exit through sys.exit: seal + last flush

    def test_or_404(test: str) -> list[str]:
        if test not in bank.tests:
            abort(404, f"Test {test!r} is not in the question bank; pick one from the list.")
        return bank.tests[test]

    def csrf_token() -> str:
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)

    def check_csrf() -> None:
        cookie, form = request.cookies.get(CSRF_COOKIE, ""), request.form.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie, form):
            abort(400, "This form has expired or was not sent from this site: reload the page and retry.")

    def page(template: str, **ctx):
        token = csrf_token()
        resp = make_response(render_template(template, csrf=token, **ctx))
        resp.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict")
        return resp

    @app.after_request
    def security_headers(resp):
        resp.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(409)
    @app.errorhandler(413)
    @app.errorhandler(503)
    def error_page(e):
        resp = make_response(render_template("error.html", code=e.code, message=e.description), e.code)
        # the reason travels to gunicorn's access line (gunicorn_conf.access_log_format): a 4xx is one line
        resp.headers[REASON_HEADER] = _one_line(e.description or "")
        if e.code == 503:
            resp.headers["Retry-After"] = "5"
        return resp

    @app.get("/")
    def index():
        return page("index.html", tests=sorted(bank.tests), user=request.args.get("user", ""))

    @app.post("/start")
    def start():
        check_csrf()
        user = _valid_user(request.form.get("user", "").strip())
        test = request.form.get("test", "")
        if test == "":  # "give me a test": the first one not started, from a per-user rotation
            done = store.started_tests(user)
            order = sorted(bank.tests, key=lambda t: hashlib.sha256(f"{user}/{t}".encode()).hexdigest())
            test = next((t for t in order if t not in done), order[0])
        test_or_404(test)
        return redirect(url_for("quiz", user=user, test=test), code=303)

    @app.get("/quiz/<user>/<test>")
    def quiz(user: str, test: str):
        user = _valid_user(user)
        items = test_or_404(test)
        answered = store.answered(user, test)
        pos = answered % len(items)
        item = bank.items[items[pos]]
        last = store.last_rows(user, test, len(items) if pos == 0 else pos)
        feedback = last[-1] if last and request.args.get("answered") == last[-1]["assessmentItemID"] else None
        finished = (answered > 0 and pos == 0)
        score = sum(r["answerCode"] for r in last) if finished else None

        history = store.history(user)
        target = {"assessmentItemID": item.item_id, "testId": item.test_id, "KnowledgeTag": item.tag,
                  "Timestamp": _now()}
        prediction = inference.predict_next(user, history, target)
        knowledge = inference.knowledge_state(user, history) if prediction.error is None else prediction
        chart = []
        if isinstance(knowledge.value, dict):
            wanted = list(dict.fromkeys([h["KnowledgeTag"] for h in history] + [bank.items[i].tag for i in items]))
            chart = [(t, knowledge.value[t]) for t in wanted if t in knowledge.value][:MAX_CHART_TAGS]
        return page("quiz.html", user=user, test=test, item=item, choices=CHOICES, position=pos + 1,
                    n_items=len(items), feedback=feedback, finished=finished, score=score,
                    prediction=prediction, knowledge=knowledge, chart=chart)

    @app.post("/quiz/<user>/<test>/answer")
    def answer(user: str, test: str):
        check_csrf()
        user = _valid_user(user)
        items = test_or_404(test)
        item_id, choice = request.form.get("item", ""), request.form.get("choice", "")
        if item_id not in items:
            abort(400, f"Item {item_id!r} is not part of test {test!r}.")
        if choice not in CHOICES:
            abort(400, f"Pick one of the choices {', '.join(CHOICES)} before submitting.")
        item = bank.items[item_id]
        row = {"userID": user, "assessmentItemID": item_id, "testId": test,
               "answerCode": bank.grade(item_id, choice), "Timestamp": _now(), "KnowledgeTag": item.tag}
        try:
            # Spooled (durable) inside the progress transaction, committed inside the spool append: both or
            # neither, so a refused answer is nowhere and the student's retry is not a duplicate.
            store.record(row, items, lambda: spool.appending([[row[c] for c in SEED_COLUMNS]]))
        except StaleAnswer as e:
            abort(409, f"{e}. Continue with the question shown on the quiz page.")
        except (SpoolWriteError, sqlite3.OperationalError) as e:  # disk full, I/O error, database locked
            log.error("POST %s 503: answer of %s to %s not stored: %s", request.path, user, item_id, e)
            abort(503, "Your answer could not be saved right now (the server is short of storage). Nothing was "
                       "recorded: go back and submit it again in a moment.")
        return redirect(url_for("quiz", user=user, test=test, answered=item_id), code=303)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "items": len(bank.items), "tests": len(bank.tests),
                "sealed_batches": len(spool.sealed_batches())}

    return app
