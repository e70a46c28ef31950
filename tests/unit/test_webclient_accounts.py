"""The client's doors (issue 12): accounts, sessions, tampering, roles, rate limits, the secret answer key and
file modes, through Flask's test client on a real state database. Two apps on one state database stand for
two gunicorn workers (what they share: the session key file, the accounts, the rate-limit counters)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sqlite3
import stat
import threading

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from dkt_core.webclient.app import SESSION_COOKIE, create_app
from dkt_core.webclient.bank import CHOICES, Item, QuestionBank, answer_for
from dkt_core.webclient.history import StateStore
from dkt_core.webclient.settings import ClientSettings
from tests.webclient_flask import PASSWORD, answer, csrf, log_in, sign_up, user_id

SECRET = b"unit-test answer-key secret 0123456789"
ITEMS = [f"i{n}" for n in range(8)]


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens: predictions unavailable


def _bank(secret: bytes = SECRET) -> QuestionBank:
    items = {i: Item(i, "T1", f"k{n % 2}", f"text {n}", answer_for(i, secret)) for n, i in enumerate(ITEMS)}
    return QuestionBank(items, {"T1": list(ITEMS)})


@pytest.fixture
def make_app(tmp_path):
    """``make_app(**settings)``: an app on tmp_path's bank and state database (a second call = a second
    worker on the same files)."""
    api = _dead_url()

    def make(bank: QuestionBank | None = None, **overrides) -> Flask:
        if bank is not None or not (tmp_path / "bank.json").exists():
            (bank or _bank()).save(tmp_path / "bank.json")
        settings = ClientSettings(bank_path=tmp_path / "bank.json", spool_dir=tmp_path / "spool",
                                  state_db=tmp_path / "state.sqlite", api_url=api, api_timeout_s=0.5,
                                  spool_max_rows=100, spool_max_age_s=3600, **overrides)
        return create_app(settings, start_flusher=False)

    return make


def _rows(app) -> list[tuple]:
    store: StateStore = app.extensions["dkt"]["store"]
    with store._connect() as db:
        return [tuple(r) for r in db.execute("SELECT userID, assessmentItemID, answerCode FROM interactions")]


def _session_cookie(client) -> str:
    cookie = client.get_cookie(SESSION_COOKIE)
    assert cookie is not None, "no session cookie"
    return cookie.value


# --- sign-up, login, logout ---------------------------------------------------------------------------------
def test_sign_up_log_out_and_log_in(make_app):
    app = make_app()
    c = app.test_client()
    r = c.get("/quiz/T1")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")  # anonymous: log in first
    uid = sign_up(c, "Alice")  # usernames are case-insensitive, stored lowercase
    assert re.fullmatch(r"web-[0-9a-f]{16}", uid)
    page = c.get("/").get_data(as_text=True)
    assert 'id="who">alice<' in page and "(student)" in page
    r = c.post("/logout", data={"csrf": csrf(c, "/")})
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert c.get("/").status_code == 302
    r = log_in(c, "ALICE")
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert user_id(c) == uid  # the same account, the same userID after a new login


@pytest.mark.parametrize("username,password", [("alice", "wrong password"), ("nobody", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_401(make_app, username, password):
    app = make_app()
    c = app.test_client()
    sign_up(c, "alice")
    c.post("/logout", data={"csrf": csrf(c, "/")})
    r = log_in(c, username, password)
    assert r.status_code == 401 and "Unknown username or wrong password." in r.get_data(as_text=True)
    assert c.get("/").status_code == 302  # still logged out


@pytest.mark.parametrize("form,msg", [
    ({"username": "a", "password": PASSWORD}, "Username must be 2-32 characters"),
    ({"username": "bad name!", "password": PASSWORD}, "Username must be 2-32 characters"),
    ({"username": "carol", "password": "short"}, "Password must be 8-128 characters"),
    ({"username": "carol", "password": PASSWORD, "password2": "something else"}, "The two passwords differ"),
    ({"username": "carol", "password": PASSWORD, "role": "admin"}, "Role must be student or teacher"),
    ({"username": "carol", "password": PASSWORD, "class_code": "ZZZZZZZZ"}, "No class has the code"),
    ({"username": "alice", "password": PASSWORD}, "is taken"),
])
def test_sign_up_refuses_bad_forms_with_a_reason(make_app, form, msg):
    app = make_app()
    sign_up(app.test_client(), "alice")
    c = app.test_client()
    data = {"csrf": csrf(c, "/signup"), "role": "student", "password2": form["password"], **form}
    r = c.post("/signup", data=data)
    assert r.status_code == 400 and msg in r.get_data(as_text=True)
    assert c.get("/").status_code == 302  # not logged in


def test_passwords_are_stored_as_scrypt_hashes_only(make_app, tmp_path):
    app = make_app()
    sign_up(app.test_client(), "alice")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite*"))
    assert PASSWORD.encode() not in raw
    with app.extensions["dkt"]["store"]._connect() as db:
        (pw_hash,) = db.execute("SELECT password_hash FROM accounts WHERE username='alice'").fetchone()
    assert pw_hash.startswith("scrypt:")


def test_login_redirects_only_within_the_site(make_app):
    app = make_app()
    c = app.test_client()
    sign_up(c, "alice")
    c.post("/logout", data={"csrf": csrf(c, "/")})
    assert log_in(c, "alice", next_url="/quiz/T1").headers["Location"] == "/quiz/T1"
    c.post("/logout", data={"csrf": csrf(c, "/")})
    assert log_in(c, "alice", next_url="//evil.example/x").headers["Location"] == "/"


def test_session_cookie_flags(make_app):
    c = make_app().test_client()
    sign_up(c, "alice")
    cookie = c.get_cookie(SESSION_COOKIE)
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    c2 = make_app(cookie_secure=True).test_client()
    c2.post("/signup", data={"csrf": csrf(c2, "/signup"), "username": "bob", "password": PASSWORD,
                             "password2": PASSWORD, "role": "student"})
    assert c2.get_cookie(SESSION_COOKIE).secure


# --- a student cannot act as another -------------------------------------------------------------------------
def test_url_names_no_student(make_app):
    """The old impersonation link /quiz/<user>/<test> is gone; the quiz page is always the session's own."""
    app = make_app()
    alice, bob = app.test_client(), app.test_client()
    alice_id, bob_id = sign_up(alice, "alice"), sign_up(bob, "bob")
    assert answer(alice, "i0", "A").status_code == 303
    for path in (f"/quiz/{alice_id}/T1", "/quiz/alice/T1", f"/quiz/{alice_id}/T1/answer"):
        assert bob.get(path).status_code == 404
        assert bob.post(path, data={"csrf": csrf(bob, "/"), "item": "i1", "choice": "A"}).status_code in (404, 405)
    assert "Question 1 of 8" in bob.get("/quiz/T1").get_data(as_text=True)  # bob's own progress
    assert "Question 2 of 8" in alice.get("/quiz/T1").get_data(as_text=True)
    assert [r[0] for r in _rows(app)] == [alice_id]
    assert bob_id != alice_id


def test_a_form_field_naming_another_student_is_ignored(make_app):
    app = make_app()
    alice, bob = app.test_client(), app.test_client()
    alice_id, bob_id = sign_up(alice, "alice"), sign_up(bob, "bob")
    r = answer(bob, "i0", "A", userID=alice_id, user=alice_id, user_id=alice_id, username="alice")
    assert r.status_code == 303
    assert _rows(app) == [(bob_id, "i0", int(answer_for("i0", SECRET) == "A"))]
    assert "Question 1 of 8" in alice.get("/quiz/T1").get_data(as_text=True)  # alice's progress untouched


def test_cookie_tampering_is_rejected(make_app, tmp_path):
    app = make_app()
    alice, mallory = app.test_client(), app.test_client()
    sign_up(alice, "alice")
    mallory_id = sign_up(mallory, "mallory")
    key = (tmp_path / "session.secret").read_bytes().strip()
    ser = SecureCookieSessionInterface().get_signing_serializer(app)
    alice_session = ser.loads(_session_cookie(alice))

    def as_mallory_with(value: str) -> int:
        m = app.test_client()
        m.set_cookie(SESSION_COOKIE, value)
        return m.get("/quiz/T1").status_code

    # alice's session content re-signed with another key (a forged cookie): refused, 302 to the login page
    other = Flask("forger")
    other.secret_key = "not the server's key " * 3
    forged = SecureCookieSessionInterface().get_signing_serializer(other).dumps(alice_session)
    assert as_mallory_with(forged) == 302
    # mallory's own, validly signed cookie with one character of the payload changed: refused
    good = _session_cookie(mallory)
    assert as_mallory_with(good) == 200
    flipped = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    assert as_mallory_with(flipped) == 302
    # a properly signed cookie (as if the key leaked) with a made-up session token: no such session
    made_up = ser.dumps({**alice_session, "_user_id": "guessed-token"})
    assert as_mallory_with(made_up) == 302
    assert key  # the key the server signs with is the file's, not in code or the environment
    assert _rows(app) == [] and mallory_id


def test_logout_ends_the_session_on_the_server(make_app):
    app = make_app()
    c = app.test_client()
    sign_up(c, "alice")
    stolen = _session_cookie(c)
    c.post("/logout", data={"csrf": csrf(c, "/")})
    replay = app.test_client()
    replay.set_cookie(SESSION_COOKIE, stolen)  # a copy of the cookie taken before the logout
    assert replay.get("/quiz/T1").status_code == 302
    r = replay.post("/quiz/T1/answer", data={"item": "i0", "choice": "A"})
    assert r.status_code in (302, 400) and _rows(app) == []


def test_two_workers_share_the_key_and_the_sessions(make_app, tmp_path):
    a, b = make_app(), make_app()
    c = a.test_client()
    uid = sign_up(c, "alice")
    other = b.test_client()
    other.set_cookie(SESSION_COOKIE, _session_cookie(c))
    assert "Question 1 of 8" in other.get("/quiz/T1").get_data(as_text=True)  # worker b knows the session
    assert answer(other, "i0", "B").status_code == 303
    assert _rows(a) == [(uid, "i0", int(answer_for("i0", SECRET) == "B"))]


# --- roles ---------------------------------------------------------------------------------------------------
def test_teacher_page_lists_the_class_and_refuses_students(make_app):
    app = make_app()
    teacher = app.test_client()
    sign_up(teacher, "mr-smith", role="teacher")
    page = teacher.get("/teacher").get_data(as_text=True)
    code = re.search(r'id="class-code">([A-Z0-9]{8})<', page).group(1)
    assert "No student has joined" in page
    s1, s2, outsider = app.test_client(), app.test_client(), app.test_client()
    id1 = sign_up(s1, "ann", class_code=code.lower())  # the code is case-insensitive
    id2 = sign_up(s2, "ben", class_code=code)
    sign_up(outsider, "zed")
    page = teacher.get("/teacher").get_data(as_text=True)
    assert re.findall(r'<tr class="student"><td>([^<]+)</td><td>([^<]+)</td>', page) == [("ann", id1), ("ben", id2)]
    for student in (s1, outsider):
        r = student.get("/teacher")
        assert r.status_code == 403 and "This page is for teachers" in r.get_data(as_text=True)
    assert app.test_client().get("/teacher").status_code == 302  # anonymous: to the login page
    other_teacher = app.test_client()
    sign_up(other_teacher, "ms-jones", role="teacher")
    assert "No student has joined" in other_teacher.get("/teacher").get_data(as_text=True)  # not smith's class


# --- rate limits (429) ---------------------------------------------------------------------------------------
def test_answers_over_the_limit_get_429_shared_by_workers(make_app):
    a, b = make_app(answer_limit="3 per hour"), make_app(answer_limit="3 per hour")
    alice = a.test_client()
    uid = sign_up(alice, "alice")
    alice_b = b.test_client()
    alice_b.set_cookie(SESSION_COOKIE, _session_cookie(alice))
    assert answer(alice, "i0", "A").status_code == 303
    assert answer(alice_b, "i1", "A").status_code == 303  # the other worker counts into the same budget
    assert answer(alice, "i2", "A").status_code == 303
    for client in (alice, alice_b):
        r = answer(client, "i3", "A")
        text = r.get_data(as_text=True)
        assert r.status_code == 429, text
        assert "Too many answers" in text and "Nothing was recorded" in text and "Please wait" in text
        assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert [r[1] for r in _rows(a)] == ["i0", "i1", "i2"]  # the refused answer is nowhere
    bob = a.test_client()
    sign_up(bob, "bob")
    assert answer(bob, "i0", "A").status_code == 303  # the limit is per account
    assert uid


def test_failed_logins_over_the_limit_get_429(make_app):
    app = make_app(login_user_limit="3 per hour")
    c = app.test_client()
    sign_up(c, "alice")
    c.post("/logout", data={"csrf": csrf(c, "/")})
    for _ in range(3):
        assert log_in(c, "alice", "guess " * 2).status_code == 401
    r = log_in(c, "alice")  # even the right password waits now: the guesser cannot tell
    assert r.status_code == 429 and "Too many login attempts" in r.get_data(as_text=True)
    assert log_in(c, "bob", "guess " * 2).status_code == 401  # per username


def test_logins_and_sign_ups_per_address_over_the_limit_get_429(make_app):
    app = make_app(login_limit="2 per hour", signup_limit="2 per hour")
    c = app.test_client()
    sign_up(c, "alice")
    sign_up(c, "bob")
    r = c.post("/signup", data={"csrf": csrf(c, "/signup"), "username": "carol", "password": PASSWORD,
                                "password2": PASSWORD})
    assert r.status_code == 429 and "Too many sign-ups" in r.get_data(as_text=True)
    assert log_in(c, "alice").status_code == 303
    assert log_in(c, "bob").status_code == 303
    assert log_in(c, "alice").status_code == 429
    assert c.get("/healthz").status_code == 200  # health checks are never limited


def test_bad_limit_setting_is_refused_with_an_example(monkeypatch):
    monkeypatch.setenv("DKT_CLIENT_ANSWER_LIMIT", "lots")
    with pytest.raises(ValueError, match="DKT_CLIENT_ANSWER_LIMIT='lots' is not a rate limit; write e.g."):
        ClientSettings.from_env()


# --- the answer key ------------------------------------------------------------------------------------------
def _public_key(item_id: str) -> str:
    return CHOICES[hashlib.sha256(item_id.encode()).digest()[0] % len(CHOICES)]


def test_a_forged_answer_scores_as_the_key_says(make_app):
    app = make_app()
    c = app.test_client()
    uid = sign_up(c, "mallory")
    bank = app.extensions["dkt"]["bank"]
    # the old attack: answer every item with sha256(item) % 4, the public derivation
    for item in ITEMS:
        assert answer(c, item, _public_key(item)).status_code == 303
    got = {item: code for u, item, code in _rows(app) if u == uid}
    want = {item: int(bank.items[item].answer == _public_key(item)) for item in ITEMS}
    assert got == want and 0 in got.values(), "some public-key answers must be wrong (else the test proves nothing)"
    # every choice from four students: exactly the key's choice scores 1
    for n, choice in enumerate(CHOICES):
        s = app.test_client()
        sid = sign_up(s, f"student{n}")
        answer(s, "i0", choice)
        assert [code for u, item, code in _rows(app) if u == sid] == [int(choice == bank.items["i0"].answer)]


def test_the_quiz_page_does_not_depend_on_the_key(make_app, tmp_path):
    """Two banks that differ only in the key give the same page: nothing on it reveals the key."""
    pages = []
    for n, secret in enumerate((SECRET, b"a completely different secret 987654")):
        app = make_app(bank=_bank(secret))
        c = app.test_client()
        sign_up(c, f"student{n}")
        pages.append(re.sub(r'(name="csrf" value=")[^"]+|id="(who|user-id)">[^<]+', r"\1",
                            c.get("/quiz/T1").get_data(as_text=True)))
    assert _bank(SECRET).items != _bank(b"a completely different secret 987654").items
    assert pages[0] == pages[1]


# --- files only the client may read --------------------------------------------------------------------------
def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_files_are_0600(make_app, tmp_path):
    old = os.umask(0o022)  # the usual umask: files would be 0644
    try:
        app = make_app()
        c = app.test_client()
        sign_up(c, "alice")
        answer(c, "i0", "A")
        reader = sqlite3.connect(tmp_path / "state.sqlite")  # in use: SQLite's -wal and -shm exist
        assert reader.execute("SELECT COUNT(*) FROM accounts").fetchone() == (1,)
        for name in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm", "session.secret", "bank.json"):
            assert _mode(tmp_path / name) == 0o600, name
        reader.close()
    finally:
        os.umask(old)
    # files left 0644 by an older version are tightened at start
    for name in ("state.sqlite", "session.secret", "bank.json"):
        os.chmod(tmp_path / name, 0o644)
    make_app()  # the bank file exists: loaded (and tightened), not rewritten
    for name in ("state.sqlite", "session.secret", "bank.json"):
        assert _mode(tmp_path / name) == 0o600, name


def test_secret_files_are_made_once_even_by_racing_workers(tmp_path):
    from dkt_core.private_files import read_or_create_secret

    path = tmp_path / "keys" / "session.secret"
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(read_or_create_secret(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got[0]) == 64 and _mode(path) == 0o600
    assert os.listdir(path.parent) == ["session.secret"]  # no temporary file left behind
    path.write_text("too short\n")
    with pytest.raises(ValueError, match="needs at least 32.*openssl rand -hex 32"):
        read_or_create_secret(path)
