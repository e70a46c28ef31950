"""Durable local spool of interactions: append-only batch files, sealed by size or age, safe with several
gunicorn workers.

Layout under the spool directory::

    active/<YYYY-MM-DD>_<uuid>.csv   a batch being written; its owner holds an exclusive flock on it
    sealed/<YYYY-MM-DD>_<uuid>.csv   a complete batch, ready to be put to S3 (see ``flusher``)

Why this shape: every process writes only its own batch file (no shared CSV, no interleaved lines), each
append is one write + fsync before the request is answered, and a batch changes state only by an atomic
rename. A batch whose owner died (its flock is free) is sealed by whoever notices, after dropping a torn
last line. The S3 key derives from the file name, so a retried upload overwrites the same object.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from dkt_core.webclient.bank import SEED_COLUMNS


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_nb(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _same_file(fd: int, path: Path) -> bool:
    """Is ``path`` still the inode behind ``fd`` (it was not renamed/removed while we waited)?"""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def encode_rows(rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


HEADER = encode_rows([SEED_COLUMNS])


def s3_key_for(batch: Path, prefix: str = "interactions") -> str:
    """``interactions/date=YYYY-MM-DD/<uuid>.csv`` from a batch file ``<date>_<uuid>.csv``."""
    date, _, rest = batch.name.partition("_")
    return f"{prefix}/date={date}/{rest}"


class Spool:
    """One process's writer into a spool directory (thread-safe within the process)."""

    def __init__(self, root: Path, *, max_rows: int = 500, max_age_s: float = 60.0):
        self.root = Path(root)
        self.active_dir = self.root / "active"
        self.sealed_dir = self.root / "sealed"
        for d in (self.active_dir, self.sealed_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._rows = 0
        self._opened_at = 0.0
        self._pid = os.getpid()

    # --- writing ---------------------------------------------------------------------------------
    def _open_batch(self) -> None:
        name = f"{datetime.now(UTC):%Y-%m-%d}_{uuid.uuid4().hex}.csv"
        # Created under a hidden name and locked before it appears in active/, so no other process can
        # mistake the fresh batch for an orphan.
        tmp = self.active_dir / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, HEADER)
        os.fsync(fd)
        path = self.active_dir / name
        os.rename(tmp, path)
        _fsync_dir(self.active_dir)
        self._fd, self._path, self._rows, self._opened_at = fd, path, 0, time.monotonic()

    def append(self, rows: Sequence[Sequence[object]]) -> None:
        """Durably append seed-format rows (returns after fsync); seals the batch when it is full."""
        if not rows:
            return
        data = encode_rows(rows)
        with self._lock:
            if os.getpid() != self._pid:  # forked after use: the parent's fd and lock are not ours
                self._fd, self._path, self._pid = None, None, os.getpid()
            if self._fd is None:
                self._open_batch()
            assert self._fd is not None
            os.write(self._fd, data)
            os.fsync(self._fd)
            self._rows += len(rows)
            if self._rows >= self.max_rows:
                self._seal_locked()

    # --- sealing ---------------------------------------------------------------------------------
    def _seal_locked(self) -> Path | None:
        if self._fd is None or self._path is None:
            return None
        target = self.sealed_dir / self._path.name
        os.rename(self._path, target)  # rename while still holding the flock
        _fsync_dir(self.sealed_dir)
        _fsync_dir(self.active_dir)
        os.close(self._fd)
        self._fd, self._path, self._rows = None, None, 0
        return target

    def seal(self) -> Path | None:
        """Seal this process's current batch now (e.g. at worker exit); returns the sealed path."""
        with self._lock:
            return self._seal_locked() if self._pid == os.getpid() else None

    def seal_if_old(self) -> Path | None:
        with self._lock:
            if self._fd is not None and time.monotonic() - self._opened_at >= self.max_age_s:
                return self._seal_locked()
        return None

    @property
    def current(self) -> Path | None:
        return self._path

    def seal_orphans(self) -> list[Path]:
        """Seal batches whose owner process is gone (their flock is free); header-only ones are removed."""
        sealed: list[Path] = []
        for path in sorted(self.active_dir.glob("*.csv")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                if not _lock_nb(fd) or not _same_file(fd, path):
                    continue  # a live writer owns it, or it was sealed meanwhile
                size = os.fstat(fd).st_size
                body = os.pread(fd, size, 0)
                keep = body.rfind(b"\n") + 1  # a crash mid-write can leave a torn last line
                if keep < size:
                    os.ftruncate(fd, keep)
                    os.fsync(fd)
                if keep <= len(HEADER):
                    os.unlink(path)
                else:
                    os.rename(path, self.sealed_dir / path.name)
                    sealed.append(self.sealed_dir / path.name)
                _fsync_dir(self.sealed_dir)
                _fsync_dir(self.active_dir)
            finally:
                os.close(fd)
        return sealed

    def sealed_batches(self) -> list[Path]:
        return sorted(self.sealed_dir.glob("*.csv"))
