"""Rate-limit counters shared by all gunicorn workers: a ``limits`` storage backed by the client's SQLite
state database, used by Flask-Limiter's fixed-window strategy.

Why: Flask-Limiter's in-memory storage counts per process, so N gunicorn workers would allow N times each
limit; its shared backends (Redis, Memcached, MongoDB) are a service this client does not otherwise need.
The state database is already the one file every worker shares. Each hit is one short ``UPSERT`` (a
write transaction of its own); expired windows are deleted as new ones open. Counters need no durability:
their connections commit with ``synchronous=NORMAL`` (no fsync per hit; a power cut may forget the last
hits, never corrupt the file), while answers keep the default full fsync.

Limitation: several client *containers* (Swarm replicas) each have their own state database, so each
replica counts separately; with ``DKT_CLIENT_REPLICAS`` > 1 the effective limit is multiplied by the
replica count.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from limits.storage import Storage

from dkt_core.webclient.history import connect, open_private_db

SCHEME = "dkt-sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limits (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expiry REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_limits_expiry ON rate_limits (expiry);
"""


class SQLiteStorage(Storage):
    """Fixed-window counters in table ``rate_limits`` of the SQLite file given as ``path``
    (``Limiter(storage_uri="dkt-sqlite://", storage_options={"path": ...})``)."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, path: str = "", **options):
        if not path:
            raise ValueError("the dkt-sqlite rate-limit storage needs storage_options={'path': <state db>}")
        self.path = Path(path)
        open_private_db(self.path)
        with closing(connect(self.path)) as db:
            db.executescript(_SCHEMA)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sqlite3.Error

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with closing(connect(self.path)) as db:
            db.execute("PRAGMA synchronous=NORMAL")  # this connection only: answers stay fully synced
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM rate_limits WHERE expiry <= ?", (now,))
                count = db.execute(
                    "INSERT INTO rate_limits (key, count, expiry) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET count = count + excluded.count RETURNING count",
                    (key, amount, now + expiry)).fetchone()[0]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(count)

    def get(self, key: str) -> int:
        with closing(connect(self.path)) as db:
            row = db.execute("SELECT count FROM rate_limits WHERE key=? AND expiry > ?", (key, time.time())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        with closing(connect(self.path)) as db:
            row = db.execute("SELECT expiry FROM rate_limits WHERE key=? AND expiry > ?", (key, time.time())).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        try:
            with closing(connect(self.path)) as db:
                db.execute("SELECT 1 FROM rate_limits LIMIT 1")
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        with closing(connect(self.path)) as db:
            return db.execute("DELETE FROM rate_limits").rowcount

    def clear(self, key: str) -> None:
        with closing(connect(self.path)) as db:
            db.execute("DELETE FROM rate_limits WHERE key=?", (key,))
