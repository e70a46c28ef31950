"""Files only their owner may read (mode 0600): server secrets, state databases, the question bank.

Why not ``chmod`` after writing: between create and chmod the file is world-readable under the usual
umask 022. Everything here is created with ``os.open(..., 0o600)`` so it never exists with wider bits.
``read_or_create_secret`` is safe with several processes starting at once (gunicorn workers): the secret
is written under a temporary name and ``os.link``-ed into place, which fails if another process won, and
then everyone reads the winner's value.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)
PRIVATE_MODE = 0o600
MIN_SECRET_CHARS = 32


def ensure_private(path: Path) -> None:
    """Tighten an existing file to 0600 (e.g. created by an older version under umask 022)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, PRIVATE_MODE)
        log.warning("%s was readable by others (mode %o); set to 0600", path, mode)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (tmp + fsync + rename), mode 0600 from creation on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def touch_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it if it does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    except FileExistsError:
        ensure_private(path)


def read_or_create_secret(path: Path, *, what: str = "secret") -> bytes:
    """The secret stored in ``path`` (its text, stripped); created with 64 random hex characters, mode
    0600, when absent. An operator may provide their own (e.g. a Docker secret): at least 32 characters."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, never replaces: a concurrent starter's secret wins
            log.info("created the %s file %s (mode 0600)", what, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        ensure_private(path)
    except OSError:  # a read-only mount or another owner (a Docker secret): its mode is the operator's choice
        pass
    value = path.read_bytes().strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"the {what} file {path} holds {len(value)} characters; it needs at least "
                         f"{MIN_SECRET_CHARS} (e.g. `openssl rand -hex 32 > {path}`), or delete it to have one made")
    return value
