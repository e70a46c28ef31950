"""Web client settings, all read from the environment (no secrets: S3 credentials come from boto3's chain).

| variable | default | meaning |
|---|---|---|
| DKT_CLIENT_BANK | $DKT_HOME/client/bank.json | question bank built by ``build-bank`` |
| DKT_CLIENT_SPOOL_DIR | $DKT_HOME/client/spool | durable local spool of interactions |
| DKT_CLIENT_STATE_DB | $DKT_HOME/client/state.sqlite | per-student progress (SQLite, shared by workers) |
| DKT_API_URL | http://127.0.0.1:3000 | inference service base URL |
| DKT_API_TIMEOUT_S | 2.0 | timeout of one inference call |
| DKT_SPOOL_MAX_ROWS | 500 | seal a spool batch at this many rows |
| DKT_SPOOL_MAX_AGE_S | 60 | ... or when its first row is this old |
| DKT_FLUSH_INTERVAL_S | 5 | how often each worker seals aged batches and flushes sealed ones |
| DKT_S3_CREATE_BUCKET | 1 | create the bucket when missing (embedded moto); set 0 on AWS |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def dkt_home() -> Path:
    return Path(os.environ.get("DKT_HOME") or ".dkt").resolve()


def _float(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be a number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be >= {minimum}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    bank_path: Path
    spool_dir: Path
    state_db: Path
    api_url: str
    api_timeout_s: float = 2.0
    spool_max_rows: int = 500
    spool_max_age_s: float = 60.0
    flush_interval_s: float = 5.0
    create_bucket: bool = True

    @classmethod
    def from_env(cls) -> ClientSettings:
        base = dkt_home() / "client"
        return cls(
            bank_path=Path(os.environ.get("DKT_CLIENT_BANK") or base / "bank.json"),
            spool_dir=Path(os.environ.get("DKT_CLIENT_SPOOL_DIR") or base / "spool"),
            state_db=Path(os.environ.get("DKT_CLIENT_STATE_DB") or base / "state.sqlite"),
            api_url=(os.environ.get("DKT_API_URL") or "http://127.0.0.1:3000").rstrip("/"),
            api_timeout_s=_float("DKT_API_TIMEOUT_S", 2.0, 0.05),
            spool_max_rows=int(_float("DKT_SPOOL_MAX_ROWS", 500, 1)),
            spool_max_age_s=_float("DKT_SPOOL_MAX_AGE_S", 60.0, 0.0),
            flush_interval_s=_float("DKT_FLUSH_INTERVAL_S", 5.0, 0.05),
            create_bucket=os.environ.get("DKT_S3_CREATE_BUCKET", "1") not in ("0", "false", "no"),
        )
