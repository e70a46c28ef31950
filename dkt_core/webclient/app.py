"""Flask app factory of the student web client (served by gunicorn: ``dkt_core.webclient.wsgi:app``).

Routes: ``GET/POST /signup``, ``GET/POST /login``, ``POST /logout``; for a logged-in account: ``GET /``
(tests by subject and grade, the student's sittings and practice sessions), ``POST /start``,
``GET /quiz/<test>`` (next item, knowledge view; a finished test offers ``POST /quiz/<test>/retake``),
``POST /quiz/<test>/answer`` (grade, spool, record), ``GET /results/test/<test>``; adaptive practice:
``POST /practice``, ``GET /practice/<n>``, ``POST /practice/<n>/answer``, ``GET /results/practice/<n>``;
``GET /progress`` (mastery over time, past sessions); for a teacher: ``GET /teacher`` (class heatmap,
students at risk), ``GET /teacher/class.csv``, ``GET /teacher/student/<userID>`` (403 for a student, or
for a student of another class); ``GET /healthz``.

Who answers is the logged-in account (Flask-Login session, ``accounts``): its ``user_id`` is the userID of
every row; no URL, form field or cookie value of a student's pages names a student (the teacher's detail
page names its student's pseudonymous userID). The session cookie is signed with a key
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
from dkt_core.settings import ClientSettings, S3Settings, load
from dkt_core.webclient import charts, pages, ratelimit
from dkt_core.webclient.accounts import MAX_PASSWORD, MIN_PASSWORD, ROLES, AccountStore, SignUpError
from dkt_core.webclient.adaptive import (
    FALLBACK_RULE,
    Option,
    accuracy,
    candidates,
    choose_next,
    fallback_next,
)
from dkt_core.webclient.bank import CHOICES, SEED_COLUMNS, QuestionBank
from dkt_core.webclient.flusher import FlushWorker
from dkt_core.webclient.history import StaleAnswer, StateStore
from dkt_core.webclient.inference import InferenceClient, Outcome, read_api_key
from dkt_core.webclient.spool import Spool, SpoolWriteError

log = logging.getLogger(__name__)
MAX_CHART_TAGS = 12  # the weakest skills on the quiz page (the page says "N of M")
MAX_PROGRESS_POINTS = 8  # mastery points over time the progress page fills in (one /knowledge_state each, once)
MAX_CLASS_STATES = 40  # /knowledge_state calls per class page (one per student); the page says when it stops
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


def create_app(settings: ClientSettings | None = None, *, s3: S3Settings | None = None,
               start_flusher: bool = True) -> Flask:
    """The client's app factory, an edge: ``settings`` and ``s3`` default to what the environment says."""
    settings = settings or load(ClientSettings)
    s3 = s3 or load(S3Settings)
    bank = QuestionBank.load(settings.bank_path)
    store = StateStore(settings.state_db)
    accounts = AccountStore(settings.state_db)
    spool = Spool(settings.spool_dir, max_rows=settings.spool_max_rows, max_age_s=settings.spool_max_age_s)
    flusher = FlushWorker(spool, interval_s=settings.flush_interval_s, settings=s3,
                          create_bucket=settings.create_bucket, committed=store.has_row)
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

    def sitting(test: str) -> tuple[str, list[str], int, int]:
        """(the student, the test's items, answers given in it so far, position in the current sitting)."""
        user = current_user.user_id
        items = test_or_404(test)
        answered = store.answered(user, test)
        return user, items, answered, answered % len(items)

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

    # --- helpers of the student pages --------------------------------------------------------------------
    def knowledge_now(user: str, history: list[dict]) -> Outcome:
        """/knowledge_state of ``user`` now; a success is kept as the mastery snapshot after len(history)."""
        outcome = inference.knowledge_state(user, history)
        if isinstance(outcome.value, dict) and history:
            store.save_mastery(user, store.count(user), _now(), outcome.value)
        return outcome

    def item_view(item_id: str, choice: str | None = None, code: int | None = None) -> dict:
        item = bank.items[item_id]
        return {"item": item, "skill": bank.tag_name(item.tag), "choice": choice, "code": code,
                "choice_text": pages.choice_text(item, choice), "answer_text": pages.choice_text(item, item.answer)}

    def practice_pool(scope: str) -> list[Option]:
        if scope == "all":
            tests = list(bank.tests)
        else:
            tests = next((ts for s, g, ts in bank.groups() if pages.scope_key(s, g) == scope), None)
            if tests is None:
                abort(400, f"Practice scope {scope!r} is not a subject and grade of this bank; pick one from the list.")
        return [Option(i, bank.items[i].tag) for t in tests for i in bank.tests[t]]

    # --- the start page ----------------------------------------------------------------------------------
    @app.get("/")
    @login_required
    def index():
        user = current_user.user_id
        sittings = pages.sittings(store.test_rows(user), bank)
        return render_template("index.html", groups=bank.groups(), bank=bank, scope_key=pages.scope_key,
                               sittings=sittings[-10:][::-1], practices=store.practices(user)[:10],
                               tests_done={s["test"]: s for s in sittings}, target=settings.practice_target)

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

    # --- a test -------------------------------------------------------------------------------------------
    @app.get("/quiz/<test>")
    @login_required
    def quiz(test: str):
        user, items, answered, pos = sitting(test)
        last = store.last_rows(user, test, len(items) if pos == 0 else pos)
        feedback = None
        if last and request.args.get("answered") == last[-1]["assessmentItemID"]:
            feedback = item_view(last[-1]["assessmentItemID"], last[-1]["choice"], last[-1]["answerCode"])
        if answered > 0 and pos == 0 and not store.retake_open(user, test, answered):
            # finished: never restart silently with the same items; the student may retake explicitly
            return render_template("test_done.html", test=test, info=bank.info(test), n_items=len(items),
                                   score=sum(r["answerCode"] for r in last), feedback=feedback)
        item = bank.items[items[pos]]
        history = store.history(user)
        prediction = Outcome(None)
        if settings.show_prediction:
            target = {"assessmentItemID": item.item_id, "testId": item.test_id, "KnowledgeTag": item.tag,
                      "Timestamp": _now()}
            prediction = inference.predict_next(user, history, target)
        knowledge = knowledge_now(user, history) if history and prediction.error is None else prediction
        chart, shown_of = None, 0
        if isinstance(knowledge.value, dict):
            wanted = list(dict.fromkeys([bank.items[i].tag for i in items] + [h["KnowledgeTag"] for h in history]))
            rows = [(t, bank.tag_name(t), knowledge.value[t]) for t in wanted if t in knowledge.value]
            shown_of = len(rows)
            rows = sorted(rows, key=lambda r: r[2])[:MAX_CHART_TAGS]  # the weakest, said on the page
            chart = charts.bars(rows, "Chance of a correct answer per skill") if rows else None
            chart_n = len(rows)
        else:
            chart_n = 0
        return render_template("quiz.html", test=test, info=bank.info(test), item=item, skill=bank.tag_name(item.tag),
                               choices=CHOICES, position=pos + 1, n_items=len(items), feedback=feedback,
                               prediction=prediction, knowledge=knowledge, chart=chart, chart_n=chart_n,
                               shown_of=shown_of, show_prediction=settings.show_prediction,
                               unavailable=(prediction.error or knowledge.error) if history or
                               settings.show_prediction else None)

    @app.post("/quiz/<test>/retake")
    @login_required
    def retake(test: str):
        items = test_or_404(test)
        answered = store.answered(current_user.user_id, test)
        if answered == 0 or answered % len(items):
            abort(409, f"Test {test!r} is not finished; continue it where you left off.")
        store.retake(current_user.user_id, test, answered)
        return redirect(url_for("quiz", test=test), code=303)

    def spool_and_record(record, item_id: str, row: dict) -> None:
        user = row["userID"]
        try:
            # Spooled (durable) inside the progress transaction, committed inside the spool append: both or
            # neither, so a refused answer is nowhere and the student's retry is not a duplicate.
            record(lambda: spool.appending([[row[c] for c in SEED_COLUMNS]]))
        except StaleAnswer as e:
            abort(409, f"{e}. Continue with the question shown on the page.")
        except (SpoolWriteError, sqlite3.OperationalError) as e:  # disk full, I/O error, database locked
            log.error("POST %s 503: answer of %s to %s not stored: %s", request.path, user, item_id, e)
            abort(503, "Your answer could not be saved right now (the server is short of storage). Nothing was "
                       "recorded: go back and submit it again in a moment.")

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
        row = {"userID": user, "assessmentItemID": item_id, "testId": test, "choice": choice,
               "answerCode": bank.grade(item_id, choice), "Timestamp": _now(), "KnowledgeTag": item.tag}
        spool_and_record(lambda durable: store.record(row, items, durable), item_id, row)
        if store.answered(user, test) % len(items) == 0:  # the sitting is complete: its results
            return redirect(url_for("test_results", test=test), code=303)
        return redirect(url_for("quiz", test=test, answered=item_id), code=303)

    @app.get("/results/test/<test>")
    @login_required
    def test_results(test: str):
        user, items, answered, pos = sitting(test)
        if answered == 0:
            abort(404, f"You have not answered test {test!r} yet; start it from the start page.")
        rows = store.last_rows(user, test, pos or len(items))
        lines = [item_view(r["assessmentItemID"], r["choice"], r["answerCode"]) for r in rows]
        return render_template("results.html", title=bank.info(test).name, kind="test", test=test, lines=lines,
                               score=sum(r["answerCode"] for r in rows), n=len(rows), complete=pos == 0,
                               n_items=len(items), rule=None)

    # --- adaptive practice --------------------------------------------------------------------------------
    @app.post("/practice")
    @login_required
    def practice_start():
        scope = request.form.get("scope", "all")
        if not practice_pool(scope):
            abort(400, "This part of the bank has no questions; pick another subject and grade.")
        sid = store.new_practice(current_user.user_id, scope, settings.practice_length, _now())
        return redirect(url_for("practice", sid=sid), code=303)

    def practice_or_404(sid: int) -> dict:
        sess = store.practice(sid, current_user.user_id)
        if sess is None:  # someone else's session is "not found", like one that never existed
            abort(404, f"Practice session {sid} is not one of yours; start a new one from the start page.")
        return sess

    @app.get("/practice/<int:sid>")
    @login_required
    def practice(sid: int):
        user = current_user.user_id
        sess = practice_or_404(sid)
        picks = store.picks(sid)
        done = [p for p in picks if p["answerCode"] is not None]
        feedback = None
        if done and request.args.get("answered") == done[-1]["item"]:
            feedback = item_view(done[-1]["item"], done[-1]["choice"], done[-1]["answerCode"])
        if len(done) >= sess["length"]:
            return redirect(url_for("practice_results", sid=sid), code=303)
        pending = picks[-1] if picks and picks[-1]["answerCode"] is None else None
        if pending is None:
            pool = practice_pool(sess["scope"])
            history = store.history(user)
            acc = accuracy(history)
            seen = {p["item"] for p in picks}
            options = candidates(pool, seen, acc, salt=str(sid))
            if not options:  # every question of the scope was shown in this session
                return redirect(url_for("practice_results", sid=sid), code=303)
            now = _now()
            outcome = inference.predict_many(user, history, [
                {"assessmentItemID": o.item_id, "testId": bank.items[o.item_id].test_id, "KnowledgeTag": o.tag,
                 "Timestamp": now} for o in options])  # ONE call over all candidates
            if outcome.value is not None:
                chance = dict(zip((o.item_id for o in options), outcome.value, strict=True))
                pick, rule, p = choose_next(options, chance, settings.practice_target), "adaptive", None
                p = chance[pick.item_id]
            else:
                pick, rule, p = fallback_next(pool, seen, acc), "fallback", None
            pending = store.add_pick(sid, pick.item_id, bank.items[pick.item_id].test_id, pick.tag, p, rule)
        item = bank.items[pending["item"]]
        return render_template("practice.html", sid=sid, sess=sess, item=item, skill=bank.tag_name(item.tag),
                               choices=CHOICES, position=len(done) + 1, feedback=feedback, pick=pending,
                               fallback_rule=FALLBACK_RULE, target=settings.practice_target,
                               show_prediction=settings.show_prediction,
                               scope=pages.scope_label(sess["scope"]))

    @app.post("/practice/<int:sid>/answer")
    @limiter.limit(settings.answer_limit, key_func=_account_key)
    @login_required
    def practice_answer(sid: int):
        user = current_user.user_id
        sess = practice_or_404(sid)
        item_id, choice = request.form.get("item", ""), request.form.get("choice", "")
        if item_id not in bank.items:
            abort(400, f"Item {item_id!r} is not in the question bank.")
        if choice not in CHOICES:
            abort(400, f"Pick one of the choices {', '.join(CHOICES)} before submitting.")
        item = bank.items[item_id]
        row = {"userID": user, "assessmentItemID": item_id, "testId": item.test_id, "choice": choice,
               "answerCode": bank.grade(item_id, choice), "Timestamp": _now(), "KnowledgeTag": item.tag}
        spool_and_record(lambda durable: store.record_practice(row, sid, durable), item_id, row)
        answered = sum(1 for p in store.picks(sid) if p["answerCode"] is not None)
        if answered >= sess["length"]:
            return redirect(url_for("practice_results", sid=sid), code=303)
        return redirect(url_for("practice", sid=sid, answered=item_id), code=303)

    @app.get("/results/practice/<int:sid>")
    @login_required
    def practice_results(sid: int):
        sess = practice_or_404(sid)
        done = [p for p in store.picks(sid) if p["answerCode"] is not None]
        lines = [{**item_view(p["item"], p["choice"], p["answerCode"]), "p": p["p"], "rule": p["rule"]}
                 for p in done]
        return render_template("results.html", title=f"Practice: {pages.scope_label(sess['scope'])}",
                               kind="practice", lines=lines, score=sum(p["answerCode"] for p in done),
                               n=len(done), complete=True, n_items=sess["length"], test=None,
                               rule=FALLBACK_RULE if any(p["rule"] == "fallback" for p in done) else None)

    # --- progress -----------------------------------------------------------------------------------------
    def backfill_mastery(user: str, history: list[dict]) -> None:
        """Snapshots at up to MAX_PROGRESS_POINTS answer counts the pages did not ask about (practice pages
        make only their one /predict call): one /knowledge_state per missing point, each kept, so a point is
        asked once. Stops at the first failure."""
        total, have = store.count(user), {n for n, _, _ in store.mastery(user)}
        offset = total - len(history)  # history holds the latest rows only
        for n in pages.checkpoints(len(history), MAX_PROGRESS_POINTS):
            if offset + n in have:
                continue
            outcome = inference.knowledge_state(user, history[:n])
            if not isinstance(outcome.value, dict):
                return
            store.save_mastery(user, offset + n, history[n - 1]["Timestamp"], outcome.value)

    def progress_context(user: str) -> dict:
        history = store.history(user)
        knowledge = knowledge_now(user, history) if history else Outcome(None, error="no answers yet")
        if isinstance(knowledge.value, dict):
            backfill_mastery(user, history)
        snapshots = store.mastery(user)
        current = knowledge.value if isinstance(knowledge.value, dict) else (snapshots[-1][2] if snapshots else {})
        ctx = pages.progress(bank, history, snapshots, current)
        ctx["bars"] = charts.bars(ctx["bar_rows"], "Chance of a correct answer per skill, now") \
            if ctx["bar_rows"] else None
        ctx["lines"] = charts.lines(ctx["series"], "Mastery per skill over your answers") if ctx["series"] else None
        ctx.update(knowledge=knowledge, stale=not isinstance(knowledge.value, dict) and bool(snapshots),
                   sittings=pages.sittings(store.test_rows(user), bank)[::-1], practices=store.practices(user))
        return ctx

    @app.get("/progress")
    @login_required
    def progress():
        return render_template("progress.html", student=None, **progress_context(current_user.user_id))

    # --- the teacher's class view ------------------------------------------------------------------------
    def class_view() -> dict:
        if not current_user.is_teacher:
            abort(403, "This page is for teachers; your account is a student account.")
        students = accounts.students_of(current_user)
        rows = []
        for n, s in enumerate(students):
            history = store.history(s["user_id"])
            # bounded: one /knowledge_state per student, for the first MAX_CLASS_STATES students
            if history and n < MAX_CLASS_STATES:
                state = knowledge_now(s["user_id"], history)
            else:
                state = Outcome(None, error="no answers yet" if not history else "not asked (class too large)")
            rows.append(pages.student_row(s, history, state, store.mastery(s["user_id"])))
        skills = pages.class_skills(rows, bank)
        return {"students": students, "rows": rows, "skills": skills, "heat_class": charts.heat_class,
                "at_risk": [r for r in rows if r["risk"]], "asked": min(len(students), MAX_CLASS_STATES),
                "max_states": MAX_CLASS_STATES, "down": next((r["error"] for r in rows if r["error"] and
                                                               "no answers" not in r["error"]), None)}

    @app.get("/teacher")
    @login_required
    def teacher():
        return render_template("teacher.html", **class_view())

    @app.get("/teacher/class.csv")
    @login_required
    def teacher_csv():
        ctx = class_view()
        resp = make_response(pages.class_csv(ctx["rows"], ctx["skills"]))
        resp.headers["Content-Type"] = "text/csv; charset=utf-8"
        resp.headers["Content-Disposition"] = f'attachment; filename="class-{current_user.class_code}.csv"'
        return resp

    @app.get("/teacher/student/<user_id>")
    @login_required
    def teacher_student(user_id: str):
        if not current_user.is_teacher:
            abort(403, "This page is for teachers; your account is a student account.")
        student = next((s for s in accounts.students_of(current_user) if s["user_id"] == user_id), None)
        if student is None:
            abort(403, "This student is not in your class: you can open only your own students' pages.")
        return render_template("progress.html", student=student, **progress_context(user_id))

    @app.get("/healthz")
    @limiter.exempt
    def healthz():
        return {"status": "ok", "items": len(bank.items), "tests": len(bank.tests),
                "sealed_batches": len(spool.sealed_batches())}

    return app
