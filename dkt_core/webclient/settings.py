"""Web client settings, read from the environment. No secret is ever in the environment: the session key and
the answer-key secret live in files (created 0600 when absent); S3 credentials come from boto3's chain.

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
| DKT_CLIENT_SECRET_KEY_FILE | $DKT_HOME/client/session.secret | Flask session-signing key (made 0600 if absent) |
| DKT_CLIENT_ANSWER_KEY_FILE | $DKT_HOME/client/answer_key.secret | HMAC secret of the answer key (build-bank) |
| DKT_CLIENT_API_KEY_FILE | $DKT_HOME/secrets/webclient.key | the client's own API key for the inference service |
| DKT_CLIENT_COOKIE_SECURE | 0 | send the session cookie over HTTPS only (set 1 behind TLS) |
| DKT_CLIENT_SESSION_HOURS | 12 | a login lasts this long (server-side session, ended by logout) |
| DKT_CLIENT_ANSWER_LIMIT | 30 per minute | answers per account |
| DKT_CLIENT_LOGIN_LIMIT | 20 per minute | login attempts per client address |
| DKT_CLIENT_LOGIN_USER_LIMIT | 10 per 15 minutes | failed logins per username |
| DKT_CLIENT_SIGNUP_LIMIT | 60 per hour | sign-ups per client address (a class behind one NAT signs up together) |
| DKT_CLIENT_PRACTICE_TARGET | 0.7 | practice picks the item whose predicted chance is nearest this |
| DKT_CLIENT_PRACTICE_LENGTH | 10 | questions in one practice session |
| DKT_CLIENT_SHOW_PREDICTION | 0 | show the predicted chance of a question before it is answered |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from limits import parse as parse_limit


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


def _fraction(name: str, default: float) -> float:
    value = _float(name, default, 0.0)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}={value!r} must be a number in (0, 1), e.g. 0.7")
    return value


def _limit(name: str, default: str) -> str:
    """A rate-limit string ("N per second|minute|hour|day", e.g. "30 per minute"), checked now."""
    raw = (os.environ.get(name) or default).strip()
    try:
        parse_limit(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a rate limit; write e.g. '30 per minute' or '10/hour'") from None
    return raw


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
    secret_key_file: Path | None = None  # None: beside the state database
    answer_key_file: Path | None = None
    api_key_file: Path | None = None  # the client's API key (a file, never the environment); None: no key
    cookie_secure: bool = False
    session_hours: float = 12.0
    answer_limit: str = "30 per minute"
    login_limit: str = "20 per minute"
    login_user_limit: str = "10 per 15 minutes"
    signup_limit: str = "60 per hour"
    practice_target: float = 0.7
    practice_length: int = 10
    show_prediction: bool = False

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.state_db.parent / "session.secret"

    @property
    def answer_key_path(self) -> Path:
        return self.answer_key_file or self.bank_path.parent / "answer_key.secret"

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
            secret_key_file=Path(os.environ.get("DKT_CLIENT_SECRET_KEY_FILE") or base / "session.secret"),
            answer_key_file=Path(os.environ.get("DKT_CLIENT_ANSWER_KEY_FILE") or base / "answer_key.secret"),
            api_key_file=Path(os.environ.get("DKT_CLIENT_API_KEY_FILE") or dkt_home() / "secrets" / "webclient.key"),
            cookie_secure=os.environ.get("DKT_CLIENT_COOKIE_SECURE", "0") in ("1", "true", "yes"),
            session_hours=_float("DKT_CLIENT_SESSION_HOURS", 12.0, 0.01),
            answer_limit=_limit("DKT_CLIENT_ANSWER_LIMIT", "30 per minute"),
            login_limit=_limit("DKT_CLIENT_LOGIN_LIMIT", "20 per minute"),
            login_user_limit=_limit("DKT_CLIENT_LOGIN_USER_LIMIT", "10 per 15 minutes"),
            signup_limit=_limit("DKT_CLIENT_SIGNUP_LIMIT", "60 per hour"),
            practice_target=_fraction("DKT_CLIENT_PRACTICE_TARGET", 0.7),
            practice_length=int(_float("DKT_CLIENT_PRACTICE_LENGTH", 10, 1)),
            show_prediction=os.environ.get("DKT_CLIENT_SHOW_PREDICTION", "0").strip().lower() in ("1", "true", "yes", "on"),
        )
