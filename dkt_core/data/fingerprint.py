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


def fingerprint(path: str | Path, frame: pd.DataFrame) -> dict:
    sha = file_sha256(path)
    return {
        "path": Path(path).name,
        "sha256": sha,
        "data_version": sha[:12],
        "rows": int(len(frame)),
        "users": int(frame["userID"].nunique()),
        "items": int(frame["assessmentItemID"].nunique()),
        "first_timestamp": str(frame["Timestamp"].min()),
        "last_timestamp": str(frame["Timestamp"].max()),
    }
