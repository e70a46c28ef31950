"""Flush sealed spool batches to S3, exactly once per batch.

Each sealed batch is put under a key derived from its own file name (``spool.s3_key_for``), and the local
file is removed only after the put succeeded. A put that fails leaves the file for the next pass; a put
that succeeded but whose reply was lost is simply repeated onto the same key (an overwrite with the same
bytes, never a second object). Several workers can flush one spool: a batch is claimed with a flock.
Only complete lines are uploaded: a torn last line (no trailing newline, e.g. a write cut short by a full
disk or a crash) is dropped and logged with its byte count, never sent as a row.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from dkt_core.storage.s3 import S3Settings, s3_client
from dkt_core.webclient.spool import (
    HEADER,
    Spool,
    _fsync_dir,
    _lock_nb,
    _same_file,
    complete_lines,
    s3_key_for,
)

log = logging.getLogger(__name__)


@dataclass
class FlushResult:
    sent: list[str] = field(default_factory=list)  # S3 keys written in this pass
    pending: int = 0  # sealed batches still waiting (failed or claimed by another worker)
    error: str | None = None


def _put(client, bucket: str, key: str, body: bytes, create_bucket: bool) -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")
    except ClientError as e:
        if not (create_bucket and e.response.get("Error", {}).get("Code") == "NoSuchBucket"):
            raise
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")


def flush_sealed(spool: Spool, client, bucket: str, *, create_bucket: bool = True) -> FlushResult:
    """One pass over the sealed batches; stops at the first S3 error (S3 is likely down) and reports it."""
    result = FlushResult()
    batches = spool.sealed_batches()
    for i, path in enumerate(batches):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # another worker flushed it
        try:
            if not _lock_nb(fd) or not _same_file(fd, path):
                result.pending += 1 if path.exists() else 0
                continue
            body = os.pread(fd, os.fstat(fd).st_size, 0)
            keep = complete_lines(body)
            if keep < len(body):
                log.warning("%s: dropping a torn last line (%d bytes) before the upload", path.name, len(body) - keep)
                body = body[:keep]
            if keep <= len(HEADER):  # no complete row: nothing to deliver
                log.warning("%s holds no complete row; removed without an upload", path.name)
                os.unlink(path)
                _fsync_dir(spool.sealed_dir)
                continue
            key = s3_key_for(path)
            try:
                _put(client, bucket, key, body, create_bucket)
            except (BotoCoreError, ClientError) as e:
                result.error = f"put s3://{bucket}/{key} failed: {e}"
                result.pending += len(batches) - i
                log.warning("%s; %d batch(es) kept in %s for the next pass", result.error,
                            result.pending, spool.sealed_dir)
                break
            os.unlink(path)  # only after a successful put, while holding the claim
            _fsync_dir(spool.sealed_dir)
            result.sent.append(key)
        finally:
            os.close(fd)
    return result


class FlushWorker:
    """Background thread of one worker: seal aged/orphaned batches and flush sealed ones periodically."""

    def __init__(self, spool: Spool, *, interval_s: float, settings: S3Settings,
                 create_bucket: bool = True, committed: Callable[[list[str], str], bool] | None = None):
        self.spool = spool
        self.committed = committed  # judges an orphan's last row (Spool.seal_orphans)
        self.interval_s = interval_s
        self.settings = settings
        self.create_bucket = create_bucket
        # Few retries and short timeouts: a down S3 must not pin the thread; the next pass retries.
        self.client = s3_client(self.settings, retries=1, timeout_s=5.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass_lock = threading.Lock()

    def run_once(self) -> FlushResult:
        with self._pass_lock:
            self.spool.seal_if_old()
            self.spool.seal_orphans(self.committed)
            return flush_sealed(self.spool, self.client, self.settings.bucket, create_bucket=self.create_bucket)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # never let the thread die: the next pass retries
                log.exception("spool flush pass failed")

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="spool-flusher", daemon=True)
            self._thread.start()

    def stop(self, *, final_flush: bool = True) -> FlushResult | None:
        """Stop the thread; seal this process's batch and try one last flush (what fails stays spooled)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 10)
        self.spool.seal()
        return self.run_once() if final_flush else None


__all__ = ["FlushResult", "FlushWorker", "flush_sealed"]
