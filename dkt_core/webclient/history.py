"""Per-student progress and history, shared by all gunicorn workers through one SQLite file.

This is the client's view state (which item comes next, the history sent to the inference service), not
the record of interactions: that is the spool -> S3 path. An answer is accepted only for the item the
student is due to answer, inside one write transaction, so a double submit or two tabs cannot log the
same answer twice. The file (and SQLite's -wal/-shm beside it, which inherit its mode) is 0600: it holds
the accounts' password hashes too (``accounts``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from dkt_core.private_files import ensure_private, touch_private
from dkt_core.webclient.bank import SEED_COLUMNS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    userID TEXT NOT NULL, assessmentItemID TEXT NOT NULL, testId TEXT NOT NULL,
    answerCode INTEGER NOT NULL, Timestamp TEXT NOT NULL, KnowledgeTag TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS by_user_test ON interactions (userID, testId);
"""


def open_private_db(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (it would use the umask: 0644), and tighten an
    existing one and its -wal/-shm files."""
    touch_private(path)
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            ensure_private(extra)


def connect(path: Path) -> sqlite3.Connection:
    """A connection per call: cheap for SQLite and never shared across threads or forks."""
    db = sqlite3.connect(path, timeout=15, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


class StaleAnswer(Exception):
    """The submitted item is not the one the student is due to answer (resubmit, old tab, forged form)."""


class StateStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        open_private_db(self.path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def answered(self, user: str, test: str) -> int:
        """How many answers ``user`` gave on ``test`` in all sittings (position = answered % len(test))."""
        with self._connect() as db:
            return db.execute(
                "SELECT COUNT(*) FROM interactions WHERE userID=? AND testId=?", (user, test)
            ).fetchone()[0]

    def history(self, user: str, limit: int = 200) -> list[dict]:
        """The user's last ``limit`` interactions, oldest first, as seed-format dicts."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(SEED_COLUMNS)} FROM interactions WHERE userID=? ORDER BY id DESC LIMIT ?",
                (user, limit),
            ).fetchall()
        return [dict(r) for r in reversed(rows)]

    def started_tests(self, user: str) -> set[str]:
        with self._connect() as db:
            return {r[0] for r in db.execute("SELECT DISTINCT testId FROM interactions WHERE userID=?", (user,))}

    def record(self, row: dict, test_items: Sequence[str], durable: Callable[[], AbstractContextManager]) -> None:
        """Store ``row`` (seed-format dict) if its item is the one due. ``durable()`` (the spool append) is
        entered inside the transaction and the COMMIT runs inside it: a failed spool write records nothing
        here, and a failed COMMIT (a full disk under SQLite) makes it take the spooled row back. Both or
        neither, so a refused answer is nowhere and a retry is not a duplicate."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")  # serialises answers of all workers
            n = db.execute(
                "SELECT COUNT(*) FROM interactions WHERE userID=? AND testId=?", (row["userID"], row["testId"])
            ).fetchone()[0]
            due = test_items[n % len(test_items)]
            if row["assessmentItemID"] != due:
                raise StaleAnswer(f"item {row['assessmentItemID']} is not the question due (answered already, or "
                                  f"skipped ahead); the next item is {due}")
            db.execute(
                f"INSERT INTO interactions ({', '.join(SEED_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                [row[c] for c in SEED_COLUMNS],
            )
            with durable():
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def has_row(self, row: Sequence[str]) -> bool:
        """Is this seed-format row (as text, e.g. read back from a spool batch) a committed interaction?"""
        if len(row) != len(SEED_COLUMNS) or not str(row[3]).lstrip("-").isdigit():
            return False
        values = [*row[:3], int(row[3]), *row[4:]]
        where = " AND ".join(f"{c}=?" for c in SEED_COLUMNS)
        with self._connect() as db:
            return db.execute(f"SELECT 1 FROM interactions WHERE {where} LIMIT 1", values).fetchone() is not None

    def last_rows(self, user: str, test: str, k: int) -> list[dict]:
        """The last ``k`` interactions of ``user`` on ``test``, oldest first (a sitting's answers)."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(SEED_COLUMNS)} FROM interactions WHERE userID=? AND testId=? "
                "ORDER BY id DESC LIMIT ?",
                (user, test, k),
            ).fetchall()
        return [dict(r) for r in reversed(rows)]
