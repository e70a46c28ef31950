"""Student and teacher accounts, classes and login sessions, in the client's state database (0600).

- Passwords are hashed with werkzeug's scrypt (``generate_password_hash``: salted, memory-hard); only
  the hash is stored. A login for an unknown name still runs one hash check, so its timing does not tell
  which names exist.
- Each account gets a ``user_id`` at sign-up: ``web-`` + 16 random hex digits, matching the data
  contract's ``ID_PATTERN``. It is the userID of every row the account writes, is never shown in a URL or
  taken from a form, and cannot collide with the ids of imported data (which are not of that shape).
- A teacher owns one class with a join code; a student may join a class with that code at sign-up.
- A login session is a random token in the signed session cookie; the database keeps its SHA-256 and
  expiry, so logout (or expiry) ends it on the server even if a copy of the cookie survives.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from dkt_core.data.schema import ID_PATTERN
from dkt_core.webclient.history import connect, open_private_db, write_transaction

USERNAME_RE = re.compile(r"^[a-z0-9_.\-]{2,32}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 128
ROLES = ("student", "teacher")
CLASS_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud in a classroom
CLASS_CODE_RE = re.compile(rf"^[{CLASS_ALPHABET}]{{8}}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('student', 'teacher')),
    class_code TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS classes (
    code TEXT PRIMARY KEY,
    teacher INTEGER NOT NULL UNIQUE REFERENCES accounts(id)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    account INTEGER NOT NULL REFERENCES accounts(id),
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS students_by_class ON accounts (class_code, role);
"""


class SignUpError(ValueError):
    """The sign-up form cannot be accepted; the message says what to change."""


@dataclass(frozen=True)
class Account:
    """A logged-in account as Flask-Login sees it (``get_id`` is the session token, not the account)."""

    id: int
    username: str
    user_id: str
    role: str
    class_code: str | None
    session_token: str = ""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return self.session_token

    @property
    def is_teacher(self) -> bool:
        return self.role == "teacher"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_user_id() -> str:
    user_id = f"web-{secrets.token_hex(8)}"
    assert re.fullmatch(ID_PATTERN, user_id)  # the data contract's userID
    return user_id


class AccountStore:
    _dummy_hash: str | None = None  # hashed once, for logins of unknown names

    def __init__(self, path: Path):
        self.path = Path(path)
        open_private_db(self.path)
        with closing(connect(self.path)) as db:
            db.executescript(_SCHEMA)

    @staticmethod
    def normalize(username: str) -> str:
        return username.strip().lower()

    def sign_up(self, username: str, password: str, role: str = "student", class_code: str = "") -> Account:
        """Create an account (a teacher also gets its class); raises ``SignUpError`` with the reason."""
        username = self.normalize(username)
        class_code = class_code.strip().upper()
        if not USERNAME_RE.match(username):
            raise SignUpError("Username must be 2-32 characters: lowercase letters, digits, '.', '_' or '-'.")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise SignUpError(f"Password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters long.")
        if role not in ROLES:
            raise SignUpError("Role must be student or teacher.")
        if role == "teacher" and class_code:
            raise SignUpError("A teacher gets a new class at sign-up; leave the class code empty.")
        pw_hash = generate_password_hash(password)  # before the transaction: it takes ~0.1-0.2 s
        with write_transaction(self.path) as db:
            if db.execute("SELECT 1 FROM accounts WHERE username=?", (username,)).fetchone():
                raise SignUpError(f"The username {username!r} is taken; pick another one.")
            if class_code and not (CLASS_CODE_RE.match(class_code) and
                                   db.execute("SELECT 1 FROM classes WHERE code=?", (class_code,)).fetchone()):
                raise SignUpError(f"No class has the code {class_code!r}; check it with your teacher "
                                  "or leave it empty.")
            cur = db.execute(
                "INSERT INTO accounts (username, user_id, password_hash, role, class_code, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (username, _new_user_id(), pw_hash, role, class_code or None, time.time()))
            account_id = cur.lastrowid
            if role == "teacher":
                while True:
                    code = "".join(secrets.choice(CLASS_ALPHABET) for _ in range(8))
                    if not db.execute("SELECT 1 FROM classes WHERE code=?", (code,)).fetchone():
                        break
                db.execute("INSERT INTO classes (code, teacher) VALUES (?, ?)", (code, account_id))
                db.execute("UPDATE accounts SET class_code=? WHERE id=?", (code, account_id))
            db.execute("COMMIT")
        account = self._by("id", account_id)
        assert account is not None
        return account

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if ``password`` is its password, else None (same work for unknown names)."""
        with closing(connect(self.path)) as db:
            row = db.execute("SELECT password_hash FROM accounts WHERE username=?",
                             (self.normalize(username),)).fetchone()
        if row is None:
            if AccountStore._dummy_hash is None:
                AccountStore._dummy_hash = generate_password_hash(secrets.token_hex(16))
            check_password_hash(AccountStore._dummy_hash, password)
            return None
        if not check_password_hash(row["password_hash"], password[:MAX_PASSWORD]):
            return None
        return self._by("username", self.normalize(username))

    def _by(self, column: str, value: object, db: sqlite3.Connection | None = None) -> Account | None:
        assert column in ("id", "username")
        own = db is None
        db = db or connect(self.path)
        try:
            row = db.execute(f"SELECT id, username, user_id, role, class_code FROM accounts WHERE {column}=?",
                             (value,)).fetchone()
        finally:
            if own:
                db.close()
        return Account(**dict(row)) if row else None

    # --- sessions ------------------------------------------------------------------------------------
    def open_session(self, account: Account, lifetime_s: float) -> Account:
        """A new login session for ``account``; the returned account carries its token."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with closing(connect(self.path)) as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions (token_sha256, account, expires) VALUES (?, ?, ?)",
                       (_sha(token), account.id, now + lifetime_s))
        return Account(account.id, account.username, account.user_id, account.role, account.class_code, token)

    def session_account(self, token: str) -> Account | None:
        """The account of a live session token, or None (unknown, ended or expired)."""
        if not token or len(token) > 128:
            return None
        db = connect(self.path)
        try:
            row = db.execute("SELECT account FROM sessions WHERE token_sha256=? AND expires >= ?",
                             (_sha(token), time.time())).fetchone()
            account = self._by("id", row["account"], db) if row else None
        finally:
            db.close()
        if account is None:
            return None
        return Account(account.id, account.username, account.user_id, account.role, account.class_code, token)

    def close_session(self, token: str) -> None:
        with closing(connect(self.path)) as db:
            db.execute("DELETE FROM sessions WHERE token_sha256=?", (_sha(token),))

    # --- classes -------------------------------------------------------------------------------------
    def students_of(self, teacher: Account) -> list[dict]:
        """The students who joined ``teacher``'s class: username and userID, by username."""
        if not teacher.is_teacher or not teacher.class_code:
            return []
        db = connect(self.path)
        try:
            rows = db.execute("SELECT username, user_id FROM accounts WHERE class_code=? AND role='student' "
                              "ORDER BY username", (teacher.class_code,)).fetchall()
        finally:
            db.close()
        return [dict(r) for r in rows]
