"""Data fingerprint: content hash and shape of a training log, recorded with every artifact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """Content hash of a frame's rows (values and order; not its index), for logs handed over in memory."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def fingerprint(path: str | Path | None, frame: pd.DataFrame) -> dict:
    """Shape and content hash of a training log: of the file at ``path``, or of ``frame`` itself (None)."""
    sha = file_sha256(path) if path is not None else frame_sha256(frame)
    return {
        "path": Path(path).name if path is not None else None,
        "sha256": sha,
        "data_version": sha[:12],
        "rows": int(len(frame)),
        "users": int(frame["userID"].nunique()),
        "items": int(frame["assessmentItemID"].nunique()),
        "first_timestamp": str(frame["Timestamp"].min()),
        "last_timestamp": str(frame["Timestamp"].max()),
    }
