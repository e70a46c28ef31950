"""Per-student progress and history, shared by all gunicorn workers through one SQLite file.

This is the client's view state (which item comes next, the history sent to the inference service), not
the record of interactions: that is the spool -> S3 path. An answer is accepted only for the item the
student is due to answer, inside one write transaction, so a double submit or two tabs cannot log the
same answer twice. The file (and SQLite's -wal/-shm beside it, which inherit its mode) is 0600: it holds
the accounts' password hashes too (``accounts``).

Besides the answers it keeps: explicit retakes (a finished test is offered again, never restarted
silently), practice sessions (each pick and its predicted chance; a practice answer carries its session and
is not counted as a test answer), and mastery snapshots (the knowledge state after n answers, for the
progress chart and the teacher's "falling" signal).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
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
CREATE TABLE IF NOT EXISTS retakes (
    userID TEXT NOT NULL, testId TEXT NOT NULL, at_count INTEGER NOT NULL,
    PRIMARY KEY (userID, testId, at_count)
);
CREATE TABLE IF NOT EXISTS practice_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, userID TEXT NOT NULL, scope TEXT NOT NULL,
    length INTEGER NOT NULL, started TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS practice_picks (
    session INTEGER NOT NULL, seq INTEGER NOT NULL, item TEXT NOT NULL, testId TEXT NOT NULL,
    tag TEXT NOT NULL, p REAL, rule TEXT NOT NULL, answerCode INTEGER, choice TEXT,
    PRIMARY KEY (session, seq)
);
CREATE TABLE IF NOT EXISTS mastery (
    userID TEXT NOT NULL, n INTEGER NOT NULL, at TEXT NOT NULL, tags TEXT NOT NULL, PRIMARY KEY (userID, n)
);
"""
# Columns added to ``interactions`` after its first release (added to an older database at start).
# batch: the spool batch file that holds the row (an orphaned batch's last row is kept only if committed there)
_EXTRA_COLUMNS = {"practice": "INTEGER", "choice": "TEXT", "batch": "TEXT"}


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


@contextmanager
def write_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection holding a write transaction (BEGIN IMMEDIATE serialises the writers of all workers).
    The caller COMMITs when it chooses (answers: inside the spool append); whatever is left uncommitted, by
    an exception or an early return, is rolled back, and the connection is closed."""
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()


class StaleAnswer(Exception):
    """The submitted item is not the one the student is due to answer (resubmit, old tab, forged form)."""


class StateStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        open_private_db(self.path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            have = {r[1] for r in db.execute("PRAGMA table_info(interactions)")}
            for name, kind in _EXTRA_COLUMNS.items():
                if name not in have:
                    try:
                        db.execute(f"ALTER TABLE interactions ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as e:  # another worker added it first
                        if "duplicate column" not in str(e):
                            raise

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def answered(self, user: str, test: str) -> int:
        """How many answers ``user`` gave on ``test`` in all sittings (position = answered % len(test))."""
        with self._connect() as db:
            return db.execute(
                "SELECT COUNT(*) FROM interactions WHERE userID=? AND testId=? AND practice IS NULL", (user, test)
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
            return {r[0] for r in db.execute("SELECT DISTINCT testId FROM interactions WHERE userID=? "
                                             "AND practice IS NULL", (user,))}

    def record(self, row: dict, test_items: Sequence[str], durable: Callable[[], AbstractContextManager]) -> None:
        """Store ``row`` (seed-format dict) if its item is the one due. ``durable()`` (the spool append) is
        entered inside the transaction and the COMMIT runs inside it: a failed spool write records nothing
        here, and a failed COMMIT (a full disk under SQLite) makes it take the spooled row back. Both or
        neither, so a refused answer is nowhere and a retry is not a duplicate."""
        with write_transaction(self.path) as db:
            n = db.execute(
                "SELECT COUNT(*) FROM interactions WHERE userID=? AND testId=? AND practice IS NULL",
                (row["userID"], row["testId"])).fetchone()[0]
            due = test_items[n % len(test_items)]
            if row["assessmentItemID"] != due:
                raise StaleAnswer(f"item {row['assessmentItemID']} is not the question due (answered already, or "
                                  f"skipped ahead); the next item is {due}")
            rowid = self._insert(db, row)
            with durable() as batch:
                db.execute("UPDATE interactions SET batch=? WHERE id=?", (batch, rowid))
                db.execute("COMMIT")

    def has_row(self, row: Sequence[str], batch: str | None = None) -> bool:
        """Is this seed-format row (as text, e.g. read back from a spool batch) a committed interaction
        (stored in spool batch ``batch`` when given: an identical retry in another batch does not count)?"""
        if len(row) != len(SEED_COLUMNS) or not str(row[3]).lstrip("-").isdigit():
            return False
        values = [*row[:3], int(row[3]), *row[4:]]
        where = " AND ".join(f"{c}=?" for c in SEED_COLUMNS)
        if batch is not None:
            where, values = f"{where} AND batch=?", [*values, batch]
        with self._connect() as db:
            return db.execute(f"SELECT 1 FROM interactions WHERE {where} LIMIT 1", values).fetchone() is not None

    def last_rows(self, user: str, test: str, k: int) -> list[dict]:
        """The last ``k`` interactions of ``user`` on ``test``, oldest first (a sitting's answers)."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(SEED_COLUMNS)}, choice FROM interactions WHERE userID=? AND testId=? "
                "AND practice IS NULL ORDER BY id DESC LIMIT ?",
                (user, test, k),
            ).fetchall()
        return [dict(r) for r in reversed(rows)]

    @staticmethod
    def _insert(db: sqlite3.Connection, row: dict, practice: int | None = None) -> int:
        return db.execute(f"INSERT INTO interactions ({', '.join(SEED_COLUMNS)}, practice, choice) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [*(row[c] for c in SEED_COLUMNS), practice, row.get("choice")]).lastrowid

    # --- tests: sittings and explicit retakes ----------------------------------------------------------
    def test_rows(self, user: str) -> list[dict]:
        """Every test answer of ``user`` (practice excluded), oldest first, with the chosen letter."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(SEED_COLUMNS)}, choice FROM interactions WHERE userID=? "
                              "AND practice IS NULL ORDER BY id", (user,)).fetchall()
        return [dict(r) for r in rows]

    def retake(self, user: str, test: str, at_count: int) -> None:
        """The student asked to sit ``test`` again after ``at_count`` answers (idempotent)."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO retakes VALUES (?, ?, ?)", (user, test, at_count))

    def retake_open(self, user: str, test: str, at_count: int) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM retakes WHERE userID=? AND testId=? AND at_count=?",
                              (user, test, at_count)).fetchone() is not None

    # --- practice sessions ------------------------------------------------------------------------------
    def new_practice(self, user: str, scope: str, length: int, started: str) -> int:
        with self._connect() as db:
            return db.execute("INSERT INTO practice_sessions (userID, scope, length, started) VALUES (?, ?, ?, ?)",
                              (user, scope, length, started)).lastrowid

    def practice(self, session: int, user: str) -> dict | None:
        """The session if it belongs to ``user`` (else None: another student's session is not found)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM practice_sessions WHERE id=? AND userID=?", (session, user)).fetchone()
        return dict(row) if row else None

    def practices(self, user: str) -> list[dict]:
        """``user``'s practice sessions, newest first, with answered / correct counts."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT s.*, COUNT(p.answerCode) AS answered, COALESCE(SUM(p.answerCode), 0) AS correct "
                "FROM practice_sessions s LEFT JOIN practice_picks p ON p.session = s.id "
                "WHERE s.userID=? GROUP BY s.id ORDER BY s.id DESC", (user,)).fetchall()
        return [dict(r) for r in rows]

    def picks(self, session: int) -> list[dict]:
        with self._connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM practice_picks WHERE session=? ORDER BY seq",
                                                (session,))]

    def add_pick(self, session: int, item: str, test: str, tag: str, p: float | None, rule: str) -> dict:
        """Make ``item`` the session's pending question, unless one is pending already (another tab picked
        first): returns the pending pick either way."""
        with write_transaction(self.path) as db:
            last = db.execute("SELECT * FROM practice_picks WHERE session=? ORDER BY seq DESC LIMIT 1",
                              (session,)).fetchone()
            if last is not None and last["answerCode"] is None:
                db.execute("COMMIT")
                return dict(last)
            seq = 0 if last is None else last["seq"] + 1
            db.execute("INSERT INTO practice_picks (session, seq, item, testId, tag, p, rule) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (session, seq, item, test, tag, p, rule))
            db.execute("COMMIT")
            return {"session": session, "seq": seq, "item": item, "testId": test, "tag": tag, "p": p, "rule": rule,
                    "answerCode": None, "choice": None}

    def record_practice(self, row: dict, session: int, durable: Callable[[], AbstractContextManager]) -> None:
        """Store a practice answer if its item is the session's pending pick; spool and commit together
        (as ``record``)."""
        with write_transaction(self.path) as db:
            pending = db.execute("SELECT seq, item FROM practice_picks WHERE session=? AND answerCode IS NULL "
                                 "ORDER BY seq DESC LIMIT 1", (session,)).fetchone()
            if pending is None or pending["item"] != row["assessmentItemID"]:
                raise StaleAnswer(f"item {row['assessmentItemID']} is not the practice question due (answered "
                                  "already, or another tab moved on)")
            rowid = self._insert(db, row, practice=session)
            db.execute("UPDATE practice_picks SET answerCode=?, choice=? WHERE session=? AND seq=?",
                       (row["answerCode"], row.get("choice"), session, pending["seq"]))
            with durable() as batch:
                db.execute("UPDATE interactions SET batch=? WHERE id=?", (batch, rowid))
                db.execute("COMMIT")

    # --- mastery over time --------------------------------------------------------------------------------
    def save_mastery(self, user: str, n: int, at: str, tags: dict[str, float]) -> None:
        """The knowledge state after ``n`` answers (the first one kept per n)."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO mastery VALUES (?, ?, ?, ?)", (user, n, at, json.dumps(tags)))

    def mastery(self, user: str) -> list[tuple[int, str, dict[str, float]]]:
        """(answers so far, when, P per tag) snapshots of ``user``, by n."""
        with self._connect() as db:
            rows = db.execute("SELECT n, at, tags FROM mastery WHERE userID=? ORDER BY n", (user,)).fetchall()
        return [(r["n"], r["at"], json.loads(r["tags"])) for r in rows]

    def count(self, user: str) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM interactions WHERE userID=?", (user,)).fetchone()[0]
