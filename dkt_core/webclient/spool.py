"""Durable local spool of interactions: append-only batch files, sealed by size or age, safe with several
gunicorn workers.

Layout under the spool directory::

    active/<YYYY-MM-DD>_<uuid>.csv   a batch being written; its owner holds an exclusive flock on it
    sealed/<YYYY-MM-DD>_<uuid>.csv   a complete batch, ready to be put to S3 (see ``flusher``)

Why this shape: every process writes only its own batch file (no shared CSV, no interleaved lines), each
append is written in full + fsynced before the request is answered, and a batch changes state only by an
atomic rename. A batch whose owner died (its flock is free) is sealed by whoever notices, after dropping a
torn last line. The S3 key derives from the file name, so a retried upload overwrites the same object.

All or nothing: an append loops over ``os.write`` until every byte is down; a short write that cannot be
completed or any OSError (ENOSPC, EIO, EDQUOT ...) truncates the batch back to its size before the append
and raises ``SpoolWriteError``, so the next row never lands glued onto a fragment and the caller can tell
the student to retry. ``Spool.appending`` keeps the rows revocable until the caller's own commit succeeded.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from dkt_core.ingest.layout import raw_key
from dkt_core.webclient.bank import SEED_COLUMNS

log = logging.getLogger(__name__)


class SpoolWriteError(OSError):
    """Rows could not be stored durably; nothing of them was kept (the batch was cut back)."""


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: a short write (a full disk can accept part of a page) is
    followed by the rest, which then either goes through or raises the real error (ENOSPC...)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # POSIX allows 0 for a regular file only in odd cases; never spin on it
            raise OSError(errno.EIO, f"write accepted 0 of {len(view)} bytes")
        view = view[n:]


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


def complete_lines(body: bytes) -> int:
    """Length of ``body`` up to and including its last newline (a torn last line is what follows)."""
    return body.rfind(b"\n") + 1


def s3_key_for(batch: Path, prefix: str = "interactions") -> str:
    """``interactions/date=YYYY-MM-DD/<uuid>.csv`` from a batch file ``<date>_<uuid>.csv``."""
    date, _, rest = batch.name.partition("_")
    return raw_key(rest, day=date, prefix=f"{prefix}/")  # the bucket's one key layout


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
        self._size = 0  # bytes of complete rows in the open batch (what a failed append is cut back to)
        self._opened_at = 0.0
        self._pid = os.getpid()

    # --- writing ---------------------------------------------------------------------------------
    def _open_batch(self) -> None:
        name = f"{datetime.now(UTC):%Y-%m-%d}_{uuid.uuid4().hex}.csv"
        # Created under a hidden name and locked before it appears in active/, so no other process can
        # mistake the fresh batch for an orphan.
        tmp = self.active_dir / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            write_all(fd, HEADER)
            os.fsync(fd)
            path = self.active_dir / name
            os.rename(tmp, path)
            _fsync_dir(self.active_dir)
        except OSError as exc:  # no room even for a header: leave nothing behind
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise SpoolWriteError(exc.errno, f"cannot start a spool batch in {self.active_dir}: "
                                             f"{exc.strerror or exc}") from exc
        self._fd, self._path, self._rows, self._size = fd, path, 0, len(HEADER)
        self._opened_at = time.monotonic()

    def append(self, rows: Sequence[Sequence[object]]) -> None:
        """Durably append seed-format rows (returns after fsync) or raise ``SpoolWriteError`` having kept
        none of them; seals the batch when it is full."""
        with self.appending(rows):
            pass

    @contextmanager
    def appending(self, rows: Sequence[Sequence[object]]) -> Iterator[str | None]:
        """Write ``rows`` durably, then run the caller's block (e.g. its database commit) with the name of
        the batch that holds them; if the block raises, the rows are cut out of the batch again, so they
        are stored exactly when the caller's block succeeded. The spool's lock is held throughout."""
        if not rows:
            yield None
            return
        data = encode_rows(rows)
        with self._lock:
            if os.getpid() != self._pid:  # forked after use: the parent's fd and lock are not ours
                self._fd, self._path, self._pid = None, None, os.getpid()
            if self._fd is None:
                self._open_batch()
            assert self._fd is not None
            start = self._size
            try:
                write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError as exc:
                self._cut_back_locked(start, f"{len(data)}-byte append failed: {exc}")
                raise SpoolWriteError(exc.errno, f"the answer could not be stored ({exc.strerror or exc}); "
                                                 "nothing of it was kept") from exc
            try:
                yield self._path.name if self._path else None
            except BaseException as exc:
                self._cut_back_locked(start, f"caller failed after the append: {type(exc).__name__}: {exc}")
                raise
            self._size = start + len(data)
            self._rows += len(rows)
            if self._rows >= self.max_rows:
                try:
                    self._seal_locked()
                except OSError:  # the rows are stored; the flusher seals the batch as an orphan or by age
                    log.exception("sealing %s failed; it stays in active/ until the next pass", self._path)

    def _cut_back_locked(self, size: int, why: str) -> None:
        """Truncate the open batch to ``size`` (its complete rows before the failed append). If even that
        fails, the batch is abandoned: closing it frees its flock, so the orphan sealer (which drops a
        torn last line) takes it over, and the next append starts a new batch."""
        assert self._fd is not None
        try:
            fragment = os.fstat(self._fd).st_size - size
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
            log.warning("spool %s cut back to %d bytes (%d bytes of a partial write dropped): %s",
                        self._path, size, fragment, why)
        except OSError as exc:
            log.error("spool %s could not be cut back to %d bytes (%s; %s): batch abandoned to the orphan sealer",
                      self._path, size, exc, why)
            os.close(self._fd)
            self._fd, self._path, self._rows, self._size = None, None, 0, 0

    # --- sealing ---------------------------------------------------------------------------------
    def _seal_locked(self) -> Path | None:
        if self._fd is None or self._path is None:
            return None
        target = self.sealed_dir / self._path.name
        os.rename(self._path, target)  # rename while still holding the flock
        _fsync_dir(self.sealed_dir)
        _fsync_dir(self.active_dir)
        os.close(self._fd)
        self._fd, self._path, self._rows, self._size = None, None, 0, 0
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

    def seal_orphans(self, committed: Callable[[list[str], str], bool] | None = None) -> list[Path]:
        """Seal batches whose owner process is gone (their flock is free); header-only ones are removed.

        A torn last line is dropped. ``committed(row, batch_name)`` (the client's state database) judges the
        last complete row: a writer killed between its spool write and its own commit never acknowledged
        that row (its transaction rolled back), so the row is dropped too and the student's retry is the
        only copy. The batch name matters: a retry within the same second is an identical row, committed
        in another batch. Only the last row can be in that state: appends are serialised and a failed one is cut back."""
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
                keep = complete_lines(body)  # a crash mid-write can leave a torn last line
                if keep < size:
                    log.warning("orphan %s: dropping a torn last line (%d bytes)", path.name, size - keep)
                last = body.rfind(b"\n", 0, keep - 1) + 1
                if committed is not None and keep > len(HEADER) and last >= len(HEADER):
                    row = next(csv.reader([body[last:keep].decode("utf-8", "replace")]), [])
                    if not committed(row, path.name):
                        log.warning("orphan %s: its last row was never committed (the writer died before "
                                    "answering); dropped (%d bytes): %s", path.name, keep - last, row)
                        keep = last
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
