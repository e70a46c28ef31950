"""Flask app factory of the student web client (served by gunicorn: ``dkt_core.webclient.wsgi:app``).

Routes: ``GET/POST /signup``, ``GET/POST /login``, ``POST /logout``; for a logged-in account: ``GET /``
(pick a test), ``POST /start``, ``GET /quiz/<test>`` (next item, prediction, knowledge view),
``POST /quiz/<test>/answer`` (grade, spool, record); for a teacher: ``GET /teacher`` (the class's students;
403 for a student); ``GET /healthz``.

Who answers is the logged-in account (Flask-Login session, ``accounts``): its ``user_id`` is the userID of
every row; no URL, form field or cookie value names a student. The session cookie is signed with a key
read from a 0600 file (``DKT_CLIENT_SECRET_KEY_FILE``), HttpOnly, SameSite=Lax, Secure when configured.
Every POST carries the session's CSRF token. Answers, logins and sign-ups are rate limited (Flask-Limiter
with counters in the state database shared by all workers, ``ratelimit``): over the limit is a 429 page
that says when to retry. Grading uses the bank's secret answer key on the server only.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import secrets
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Flask, abort, make_response, redirect, render_template, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from dkt_core.data.schema import TIMESTAMP_FORMAT
from dkt_core.private_files import read_or_create_secret
from dkt_core.webclient import ratelimit
from dkt_core.webclient.accounts import MAX_PASSWORD, MIN_PASSWORD, ROLES, AccountStore, SignUpError
from dkt_core.webclient.bank import CHOICES, SEED_COLUMNS, QuestionBank
from dkt_core.webclient.flusher import FlushWorker
from dkt_core.webclient.history import StaleAnswer, StateStore
from dkt_core.webclient.inference import InferenceClient, read_api_key
from dkt_core.webclient.settings import ClientSettings
from dkt_core.webclient.spool import Spool, SpoolWriteError

log = logging.getLogger(__name__)
MAX_CHART_TAGS = 12
SESSION_COOKIE = "dkt_session"
REASON_HEADER = "X-Error-Reason"  # short reason of an error reply, logged on its access line
_LIMITED = {"answer": "answers", "login": "login attempts", "signup": "sign-ups"}


def _one_line(text: str, limit: int = 200) -> str:
    """Printable ASCII on one line (a header value and a log field), at most ``limit`` characters."""
    text = " ".join(text.split()).encode("ascii", "backslashreplace").decode()
    return text if len(text) <= limit else text[:limit] + "..."


def _now() -> str:
    # The server's clock (UTC) is the Timestamp of record: never the browser's, never random.
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def _safe_next(target: str | None) -> str | None:
    """A ``next`` path of this site only (no scheme, host or ``//``): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def _account_key() -> str:
    """Rate-limit key of an answer: the account (all its tabs and devices), else the address."""
    if current_user.is_authenticated:
        return f"account:{current_user.user_id}"
    return f"ip:{get_remote_address()}"


def _username_key() -> str:
    return "user:" + AccountStore.normalize(request.form.get("username", ""))[:64]


def create_app(settings: ClientSettings | None = None, *, start_flusher: bool = True) -> Flask:
    settings = settings or ClientSettings.from_env()
    bank = QuestionBank.load(settings.bank_path)
    store = StateStore(settings.state_db)
    accounts = AccountStore(settings.state_db)
    spool = Spool(settings.spool_dir, max_rows=settings.spool_max_rows, max_age_s=settings.spool_max_age_s)
    flusher = FlushWorker(spool, interval_s=settings.flush_interval_s, create_bucket=settings.create_bucket,
                          committed=store.has_row)
    inference = InferenceClient(settings.api_url, timeout_s=settings.api_timeout_s,
                                api_key=read_api_key(settings.api_key_file))
    session_lifetime = timedelta(hours=settings.session_hours)

    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=16 * 1024, DEBUG=False, TESTING=False,
        SECRET_KEY=read_or_create_secret(settings.secret_key_path, what="session key"),
        SESSION_COOKIE_NAME=SESSION_COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure, PERMANENT_SESSION_LIFETIME=session_lifetime,
    )
    app.extensions["dkt"] = {"bank": bank, "store": store, "accounts": accounts, "spool": spool,
                             "flusher": flusher, "inference": inference, "settings": settings}

    login_manager = LoginManager(app)
    login_manager.login_view = "login"
    login_manager.login_message = None  # the login page says what to do; no flash messages here
    login_manager.user_loader(accounts.session_account)

    # Counters in the state database: one budget for all gunicorn workers (see ratelimit's docstring).
    limiter = Limiter(get_remote_address, app=app, storage_uri=f"{ratelimit.SCHEME}://",
                      storage_options={"path": str(settings.state_db)}, strategy="fixed-window",
                      headers_enabled=False,  # Retry-After is set on the 429 only (not on a 503's "5")
                      swallow_errors=True)  # a locked database must not block answers
    app.extensions["dkt"]["limiter"] = limiter

    if start_flusher:
        flusher.start()
        atexit.register(flusher.stop)  # gunicorn workers exit through sys.exit: seal + last flush

    def test_or_404(test: str) -> list[str]:
        if test not in bank.tests:
            abort(404, f"Test {test!r} is not in the question bank; pick one from the list.")
        return bank.tests[test]

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def check_csrf() -> None:
        # Every POST carries the token of its session: a form posted from another site has none.
        if request.method == "POST":
            expected, sent = session.get("csrf", ""), request.form.get("csrf", "")
            if not expected or not hmac.compare_digest(expected, sent):
                abort(400, "This form has expired or was not sent from this site: reload the page and retry.")

    def start_session(account) -> None:
        session.clear()  # a fresh session (and CSRF token) at login: nothing carried over from before
        login_user(accounts.open_session(account, session_lifetime.total_seconds()))
        session.permanent = True

    @app.after_request
    def security_headers(resp):
        resp.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; form-action 'self'"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(409)
    @app.errorhandler(413)
    @app.errorhandler(429)
    @app.errorhandler(503)
    def error_page(e):
        message = e.description
        if e.code == 429:
            current = limiter.current_limit
            wait_s = max(1, int(current.reset_at - time.time())) if current else 60
            at = datetime.now(UTC) + timedelta(seconds=wait_s)
            what = _LIMITED.get(request.endpoint or "", "requests")
            done = "Nothing was recorded. " if request.endpoint == "answer" else ""
            message = (f"Too many {what} in a short time (limit: {e.description}). {done}"
                       f"Please wait {wait_s} seconds and try again (after {at:%H:%M:%S} UTC).")
        resp = make_response(render_template("error.html", code=e.code, message=message), e.code)
        # the reason travels to gunicorn's access line (gunicorn_conf.access_log_format): a 4xx is one line
        resp.headers[REASON_HEADER] = _one_line(message or "")
        if e.code == 503:
            resp.headers["Retry-After"] = "5"
        if e.code == 429:
            resp.headers["Retry-After"] = str(wait_s)
        return resp

    # --- accounts -------------------------------------------------------------------------------------
    @app.route("/signup", methods=["GET", "POST"])
    @limiter.limit(settings.signup_limit, methods=["POST"])
    def signup():
        form = {"username": "", "role": "student", "class_code": ""}
        error = None
        if request.method == "POST":
            form = {k: request.form.get(k, "").strip() for k in form}
            password = request.form.get("password", "")
            if password != request.form.get("password2", ""):
                error = "The two passwords differ; type the same password twice."
            else:
                try:
                    account = accounts.sign_up(form["username"], password, form["role"] or "student",
                                               form["class_code"])
                except SignUpError as e:
                    error = str(e)
                else:
                    start_session(account)
                    return redirect(url_for("index"), code=303)
        return render_template("signup.html", form=form, error=error, roles=ROLES, min_password=MIN_PASSWORD,
                               max_password=MAX_PASSWORD), 400 if error else 200

    @app.route("/login", methods=["GET", "POST"])
    @limiter.limit(settings.login_limit, methods=["POST"])
    @limiter.limit(settings.login_user_limit, key_func=_username_key, methods=["POST"],
                   deduct_when=lambda resp: resp.status_code != 303)  # failed logins only
    def login():
        error = None
        username = request.form.get("username", "").strip()
        if request.method == "POST":
            account = accounts.authenticate(username, request.form.get("password", ""))
            if account is None:
                log.info("failed login for %r from %s", _one_line(username, 64), get_remote_address())
                error = "Unknown username or wrong password."
            else:
                target = _safe_next(request.args.get("next"))
                start_session(account)
                return redirect(target or url_for("index"), code=303)
        return render_template("login.html", username=username, error=error), 401 if error else 200

    @app.post("/logout")
    def logout():
        if current_user.is_authenticated:
            accounts.close_session(current_user.session_token)  # the cookie, even if copied, is dead now
            logout_user()
        session.clear()
        return redirect(url_for("login"), code=303)

    @app.get("/teacher")
    @login_required
    def teacher():
        if not current_user.is_teacher:
            abort(403, "This page is for teachers; your account is a student account.")
        return render_template("teacher.html", students=accounts.students_of(current_user))

    # --- the quiz ---------------------------------------------------------------------------------------
    @app.get("/")
    @login_required
    def index():
        return render_template("index.html", tests=sorted(bank.tests))

    @app.post("/start")
    @login_required
    def start():
        user = current_user.user_id
        test = request.form.get("test", "")
        if test == "":  # "give me a test": the first one not started, from a per-user rotation
            done = store.started_tests(user)
            order = sorted(bank.tests, key=lambda t: hashlib.sha256(f"{user}/{t}".encode()).hexdigest())
            test = next((t for t in order if t not in done), order[0])
        test_or_404(test)
        return redirect(url_for("quiz", test=test), code=303)

    @app.get("/quiz/<test>")
    @login_required
    def quiz(test: str):
        user = current_user.user_id
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
        return render_template("quiz.html", test=test, item=item, choices=CHOICES, position=pos + 1,
                               n_items=len(items), feedback=feedback, finished=finished, score=score,
                               prediction=prediction, knowledge=knowledge, chart=chart)

    @app.post("/quiz/<test>/answer")
    @limiter.limit(settings.answer_limit, key_func=_account_key)
    @login_required
    def answer(test: str):
        user = current_user.user_id  # the account's id; any userID/user field in the form is ignored
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
        return redirect(url_for("quiz", test=test, answered=item_id), code=303)

    @app.get("/healthz")
    @limiter.exempt
    def healthz():
        return {"status": "ok", "items": len(bank.items), "tests": len(bank.tests),
                "sealed_batches": len(spool.sealed_batches())}

    return app
