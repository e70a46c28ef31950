"""One settings surface: every environment variable the platform reads, declared once, parsed by one parser.

Each variable is a ``Var`` (name, typed default, meaning, checks) in ``VARS``; each area's settings is a
frozen dataclass whose fields point at those variables (``setting(VAR)``). ``load(Area)`` (or
``Area.from_env()``) reads the environment once and returns typed values; a bad value is a ``ValueError``
naming the variable and what it must be. Only the edges (the ``dkt`` CLI, the DAG tasks and plugins, the
Bento service, the web client's app factory and gunicorn config) load settings; the modules below receive
values and never read the environment (tests/unit/test_settings.py checks both).

``DKT_HOME`` has one default (``.dkt`` in the current directory, made absolute); paths under it follow it.
The BentoML model store is ``BENTOML_HOME`` or ``~/bentoml`` (BentoML's own rule, written once here).

Variables read outside Python (compose.yaml, the Dockerfiles, make, scripts, tests) are declared too
(``Var(..., reader=...)``), so ``dkt settings --markdown`` prints the complete table the README holds.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# --- the declaration ------------------------------------------------------------------------------------------

KINDS = ("str", "opt_str", "int", "float", "bool", "path", "list", "limit")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Var:
    """One environment variable: its typed default, what it means, and the checks a value must pass."""

    name: str
    default: Any
    doc: str
    area: str
    kind: str = "str"
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    below: float | None = None  # exclusive upper bound
    choices: tuple[str, ...] = ()
    what: str = ""  # how the message names a valid value, when the checks alone say it badly
    under_home: str | None = None  # unset: DKT_HOME / under_home (the default is shown as $DKT_HOME/...)
    shown: str | None = None  # the default as the table shows it (when str(default) says it badly)
    reader: str = ""  # who reads it when it is not a settings field: "compose", "make", "tests", ...
    follows: str | None = None  # unset or empty: the value of this other variable (e.g. DKT_BIND_HOST)

    def describe(self) -> str:
        """What a valid value is, for error messages."""
        if self.what:
            return self.what
        base = {"int": "a whole number", "float": "a number", "bool": f"one of {_TRUE + _FALSE}",
                "limit": "a rate limit"}.get(self.kind, "a value")
        if self.choices:
            return f"one of {self.choices}"
        if self.above is not None and self.below is not None:
            return f"{base} in ({self.above:g}, {self.below:g})"
        if self.minimum is not None:
            return f"{base} >= {self.minimum:g}"
        if self.above is not None:
            return f"{base} > {self.above:g}"
        return base

    def problem(self, value: Any) -> str | None:
        """Why an already typed ``value`` is out of range (None: fine). One rule for parsing and construction."""
        if self.choices and value not in self.choices:
            return self.describe()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if ((self.minimum is not None and value < self.minimum) or (self.above is not None and value <= self.above)
                    or (self.below is not None and value >= self.below)):
                return self.describe()
        return None

    def parse(self, raw: str, home: Path | None = None) -> Any:
        """The typed value of ``raw`` (stripped; empty = the default). Raises ValueError naming the variable."""
        text = raw.strip()
        if not text:
            if self.under_home is not None and home is not None:
                return home / self.under_home
            return self.default
        try:
            value = _convert(self.kind, text)
        except ValueError as exc:
            if self.kind == "limit":
                raise ValueError(f"{self.name}={text!r} is not a rate limit; write e.g. '30 per minute' or "
                                 f"'10/hour'") from None
            raise ValueError(f"{self.name} must be {self.describe()}, got {text!r}{_detail(exc)}") from None
        if self.problem(value) is not None:
            raise ValueError(f"{self.name} must be {self.describe()}, got {text!r}")
        return value

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.follows is not None:
            return f"${self.follows} ({self.default})"
        if self.under_home is not None:
            return f"$DKT_HOME/{self.under_home}"
        if self.default is None or self.default == "":
            return "(empty)"
        if isinstance(self.default, bool):
            return "1" if self.default else "0"
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        return str(self.default)


def _detail(exc: ValueError) -> str:
    return "" if "invalid literal" in str(exc) or "could not convert" in str(exc) else f" ({exc})"


def _convert(kind: str, text: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("not a yes/no value")
    if kind == "path":
        return Path(text).expanduser()
    if kind == "list":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == "limit":
        from limits import parse as parse_limit  # the web client's dependency; only checked when set

        parse_limit(text)
        return text
    return text


VARS: dict[str, Var] = {}


def _var(name: str, default: Any, doc: str, area: str, **kw: Any) -> Var:
    if name in VARS:
        raise RuntimeError(f"{name} is declared twice")
    VARS[name] = var = Var(name, default, doc, area, **kw)
    return var


def required(var: Var) -> Any:
    """A dataclass field read from ``var`` that a direct construction must give (``load`` fills it)."""
    return field(metadata={"var": var})


_UNSET: Any = object()


def setting(var: Var, *, default: Any = _UNSET) -> Any:
    """A dataclass field read from ``var``; a direct construction gets ``var``'s default (a path declared under
    ``DKT_HOME`` follows the one HOME rule: :func:`home` of an empty environment) unless the area gives its own
    (``load`` always reads ``var``)."""
    return field(default=_direct_default(var) if default is _UNSET else default, metadata={"var": var})


def _direct_default(var: Var) -> Any:
    """``var``'s value in a direct construction. ``DKT_HOME`` and the paths under it are made absolute here, the
    way :func:`home` does for an unset ``DKT_HOME``; a path whose declared default is None stays None (its area
    derives it from another field, e.g. the session key beside the state database)."""
    if var is HOME:
        return Path(HOME.default).resolve()
    if var.under_home is not None and var.default is not None:
        return Path(HOME.default).resolve() / var.under_home
    return var.default


# --- the variables ------------------------------------------------------------------------------------------------
# home
HOME = _var("DKT_HOME", Path(".dkt"), "runtime state: caches, logs, spool, Airflow home, registry storage",
            "home", kind="path", shown="./.dkt (made absolute)")
BENTOML_HOME = _var("BENTOML_HOME", Path("~/bentoml").expanduser(), "BentoML's model store (BentoML's own variable)",
                    "home", kind="path", shown="~/bentoml")
# Issue 12: the one address every listener the platform starts binds (the proxy's and the client's published
# ports, Airflow's API server, the registry, the embedded S3, `make serve`, Swarm's control plane). Loopback
# unless an operator says otherwise; docs/security.md "Listeners".
BIND_HOST = _var("DKT_BIND_HOST", "127.0.0.1", "address every listener of the platform binds (published stack "
                 "ports, web client, Airflow API server, registry, embedded S3, make serve, Swarm); 0.0.0.0 or a "
                 "host address exposes them (docs/security.md)", "home")
GIT_SHA = _var("DKT_GIT_SHA", "nogit", "code version in image tags when git cannot tell (no .git)", "deploy")

# S3
S3_ENDPOINT_URL = _var("DKT_S3_ENDPOINT_URL", None, "S3 endpoint; empty for AWS S3 (make: http://127.0.0.1:9000, "
                       "moto)", "s3", kind="opt_str")
S3_BUCKET = _var("DKT_S3_BUCKET", "dkt-platform", "the platform's bucket", "s3")
S3_REGION = _var("AWS_DEFAULT_REGION", "us-east-1", "S3 region (boto3's variable)", "s3")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    _var(_name, None, "S3 credentials: boto3's usual chain (env, profile, instance role); never in code",
         "s3", reader="boto3", shown="(boto3 chain; make uses testing for moto)")
S3_CREATE_BUCKET = _var("DKT_S3_CREATE_BUCKET", True, "the web client creates the bucket when missing (embedded "
                        "moto); set 0 on AWS", "client", kind="bool")
S3_PORT = _var("DKT_S3_PORT", "9000", "port of `make s3-up`'s moto server (from DKT_S3_ENDPOINT_URL)", "s3",
               reader="make")

# ingestion
INGEST_MAX_OBJECT_BYTES = _var("DKT_INGEST_MAX_OBJECT_BYTES", 256 * 2**20, "a raw upload larger than this is "
                               "quarantined unread", "ingest", kind="int", minimum=1, shown="268435456 (256 MiB)")
INGEST_MAX_DECOMPRESSED_BYTES = _var("DKT_INGEST_MAX_DECOMPRESSED_BYTES", 2**30, "a gzip upload expanding past this "
                                     "is quarantined (gzip bombs)", "ingest", kind="int", minimum=1,
                                     shown="1073741824 (1 GiB)")
INGEST_MAX_COMPRESSION_RATIO = _var("DKT_INGEST_MAX_COMPRESSION_RATIO", 100, "a gzip upload expanding more than "
                                    "this many times its size (checked past 16 MiB of output) is quarantined",
                                    "ingest", kind="int", minimum=1)
INGEST_MAX_RUN_BYTES = _var("DKT_INGEST_MAX_RUN_BYTES", 2**30, "listed bytes one ingestion run reads; a larger "
                            "backlog goes over several runs", "ingest", kind="int", minimum=1,
                            shown="1073741824 (1 GiB)")
INGEST_LEASE_TTL_S = _var("DKT_INGEST_LEASE_TTL_S", 3600, "ingest lease TTL (s); keep it above the ingest task's "
                          "timeout (a live run renews it every TTL/4)", "ingest", kind="int", minimum=1)

# retraining
HOLDOUT_FRACTION = _var("DKT_HOLDOUT_FRACTION", 0.2, "share of users (stable hash) that never train: the gate's "
                        "fixed hold-out", "retrain", kind="float", above=0.0, below=1.0)
HOLDOUT_SALT = _var("DKT_HOLDOUT_SALT", "holdout", "salt of the hold-out hash (changing it changes the hold-out)",
                    "retrain")
GATE_TOLERANCE = _var("DKT_GATE_TOLERANCE", 0.002, "promote if challenger AUC >= champion AUC - tolerance (DAG "
                      "param default)", "retrain", kind="float", minimum=0.0)
DEPLOY_MODE = _var("DKT_DEPLOY", "swarm", "promotion: swarm (roll out) or none (package + champion alias only)",
                   "retrain", choices=("swarm", "none"))
RETRAIN_CACHE = _var("DKT_RETRAIN_CACHE", Path(".dkt/cache/retrain"), "local copies of immutable S3 objects",
                     "retrain", kind="path", under_home="cache/retrain")
EVAL_BOOTSTRAP = _var("DKT_EVAL_BOOTSTRAP", 200, "user-bootstrap resamples (fixed seed) of every interval",
                      "retrain", kind="int", minimum=0)
MIN_NEW_ROWS = _var("DKT_RETRAIN_MIN_NEW_ROWS", 500, "retrain only when this many answered rows arrived since the "
                    "last training (DAG param min_new_rows)", "retrain", kind="int", minimum=0)
MIN_NEW_USERS = _var("DKT_RETRAIN_MIN_NEW_USERS", 20, "... from at least this many users (DAG param "
                     "min_new_users)", "retrain", kind="int", minimum=0)
JUDGE_MIN_ROWS = _var("DKT_JUDGE_MIN_ROWS", 200, "live AUC and drift on fewer rows are marked \"too few to judge\"",
                      "retrain", kind="int", minimum=0)
JUDGE_MIN_USERS = _var("DKT_JUDGE_MIN_USERS", 20, "... or on fewer users", "retrain", kind="int", minimum=0)
TRAIN_SCRATCH_DAYS = _var("DKT_TRAIN_SCRATCH_DAYS", 7, "a run's training scratch (`runs/<run>/train/`) left by a run "
                          "that never committed is deleted this many days after its newest object (0: never); a "
                          "committed run's is deleted at once", "retrain", kind="int", minimum=0)

# serving
MODEL_TAG = _var("DKT_MODEL_TAG", None, "BentoML model `dkt serve` and the service load", "serving",
                 kind="opt_str", shown="(empty: the most recently packaged)")
SERVE_HOST = _var("DKT_SERVE_HOST", "127.0.0.1", "address `make serve` binds", "serving", reader="make",
                  follows="DKT_BIND_HOST")
SERVE_PORT = _var("DKT_SERVE_PORT", 3000, "port `dkt serve` / `make serve` listens on", "serving", kind="int",
                  minimum=1, below=65536)
SERVE_WORKERS = _var("DKT_SERVE_WORKERS", 1, "service worker processes", "serving", kind="int", minimum=1)
BATCH_MAX_STUDENTS = _var("DKT_BATCH_MAX_STUDENTS", 256, "adaptive batching: most students in one model call "
                          "(default: api.MAX_STUDENTS_PER_REQUEST)",
                          "serving", kind="int", minimum=1)
BATCH_MAX_LATENCY_MS = _var("DKT_BATCH_MAX_LATENCY_MS", 10000, "adaptive batching: latency budget of a batch (ms)",
                            "serving", kind="int", minimum=1)
KEEPALIVE_REQUESTS = _var("DKT_KEEPALIVE_REQUESTS", 25, "requests per keep-alive connection before it is closed "
                          "(spreads clients over workers; 0: no limit)", "serving", kind="int", minimum=0)
TORCH_THREADS = _var("DKT_TORCH_THREADS", 1, "torch threads per service worker", "serving", kind="int", minimum=1)
HISTORY_WINDOW = _var("DKT_HISTORY_WINDOW", 400, "a student's most recent interactions the service keeps",
                      "serving", kind="int", minimum=1)
API_AUTH = _var("DKT_API_AUTH", True, "require `Authorization: Bearer <key>` on every route but /livez and "
                "/readyz; 0/off only for local development (docs/security.md)", "serving", kind="bool")
API_KEYS_FILE = _var("DKT_API_KEYS_FILE", Path(".dkt/secrets/api_keys.json"), "key-hash file (JSON, 0600; hashes only): "
                     "`make api-key` writes it, the service reads it at start-up (stack: Docker secret "
                     "/run/secrets/dkt_api_keys)", "serving", kind="path", under_home="secrets/api_keys.json")

# web client
CLIENT_HOST = _var("DKT_CLIENT_HOST", "127.0.0.1", "address the web client (gunicorn) binds", "client",
                   follows="DKT_BIND_HOST")
CLIENT_PORT = _var("DKT_CLIENT_PORT", 8088, "port of the web client (gunicorn; published port in the stack)",
                   "client", kind="int", minimum=1, below=65536)
CLIENT_WORKERS = _var("DKT_CLIENT_WORKERS", 2, "gunicorn worker processes", "client", kind="int", minimum=1)
CLIENT_THREADS = _var("DKT_CLIENT_THREADS", 4, "gunicorn threads per worker", "client", kind="int", minimum=1)
CLIENT_BANK = _var("DKT_CLIENT_BANK", Path(".dkt/client/bank.json"), "question bank built by `build-bank` (also "
                   "what `make deploy` ships)", "client", kind="path", under_home="client/bank.json")
CLIENT_SPOOL_DIR = _var("DKT_CLIENT_SPOOL_DIR", Path(".dkt/client/spool"), "durable local spool of interactions",
                        "client", kind="path", under_home="client/spool")
CLIENT_STATE_DB = _var("DKT_CLIENT_STATE_DB", Path(".dkt/client/state.sqlite"), "per-student progress (SQLite, "
                       "shared by workers)", "client", kind="path", under_home="client/state.sqlite")
API_URL = _var("DKT_API_URL", "http://127.0.0.1:3000", "inference service base URL the client calls", "client")
API_TIMEOUT_S = _var("DKT_API_TIMEOUT_S", 2.0, "timeout of one inference call (s)", "client", kind="float",
                     minimum=0.05)
SPOOL_MAX_ROWS = _var("DKT_SPOOL_MAX_ROWS", 500, "seal a spool batch at this many rows", "client", kind="int",
                      minimum=1)
SPOOL_MAX_AGE_S = _var("DKT_SPOOL_MAX_AGE_S", 60.0, "... or when its first row is this old (s)", "client",
                       kind="float", minimum=0.0)
FLUSH_INTERVAL_S = _var("DKT_FLUSH_INTERVAL_S", 5.0, "how often each worker seals aged batches and flushes sealed "
                        "ones (s)", "client", kind="float", minimum=0.05)
CLIENT_SECRET_KEY_FILE = _var("DKT_CLIENT_SECRET_KEY_FILE", None, "Flask session-signing key (made 0600 if absent)",
                              "client", kind="path", under_home="client/session.secret")
CLIENT_ANSWER_KEY_FILE = _var("DKT_CLIENT_ANSWER_KEY_FILE", None, "HMAC secret of the answer key (build-bank)",
                              "client", kind="path", under_home="client/answer_key.secret")
CLIENT_API_KEY_FILE = _var("DKT_CLIENT_API_KEY_FILE", Path(".dkt/secrets/webclient.key"), "the client's own API "
                          "key (a file; stack: Docker secret /run/secrets/dkt_client_api_key)", "client",
                          kind="path", under_home="secrets/webclient.key")
CLIENT_COOKIE_SECURE = _var("DKT_CLIENT_COOKIE_SECURE", False, "send the session cookie over HTTPS only (set 1 "
                            "behind TLS)", "client", kind="bool")
CLIENT_SESSION_HOURS = _var("DKT_CLIENT_SESSION_HOURS", 12.0, "a login lasts this long (hours)", "client",
                            kind="float", minimum=0.01)
CLIENT_ANSWER_LIMIT = _var("DKT_CLIENT_ANSWER_LIMIT", "30 per minute", "answers per account", "client", kind="limit")
CLIENT_LOGIN_LIMIT = _var("DKT_CLIENT_LOGIN_LIMIT", "20 per minute", "login attempts per client address", "client",
                          kind="limit")
CLIENT_LOGIN_USER_LIMIT = _var("DKT_CLIENT_LOGIN_USER_LIMIT", "10 per 15 minutes", "failed logins per username",
                               "client", kind="limit")
CLIENT_SIGNUP_LIMIT = _var("DKT_CLIENT_SIGNUP_LIMIT", "60 per hour", "sign-ups per client address", "client",
                           kind="limit")
CLIENT_PRACTICE_TARGET = _var("DKT_CLIENT_PRACTICE_TARGET", 0.7, "practice picks, from the weakest skills, the item "
                              "whose predicted chance is nearest this", "client", kind="float", above=0.0, below=1.0)
CLIENT_PRACTICE_LENGTH = _var("DKT_CLIENT_PRACTICE_LENGTH", 10, "questions in one practice session", "client",
                              kind="int", minimum=1)
CLIENT_SHOW_PREDICTION = _var("DKT_CLIENT_SHOW_PREDICTION", False, "show the predicted chance of a question before "
                              "it is answered", "client", kind="bool")

# deployment
REGISTRY = _var("DKT_REGISTRY", "127.0.0.1:5000", "image registry (use `docker login` for a private one)", "deploy")
REGISTRY_USER = _var("DKT_REGISTRY_USER", "dkt", "user the deployer logs in to the registry as (make registry-up "
                     "makes it for the local registry)", "deploy")
REGISTRY_PASSWORD_FILE = _var("DKT_REGISTRY_PASSWORD_FILE", Path(".dkt/registry/password"), "registry password "
                              "(0600; generated by make registry-up for the local registry; read by `docker login "
                              "--password-stdin`, never in argv or env)", "deploy", kind="path",
                              under_home="registry/password")
CLIENT_S3_CREDENTIALS_FILE = _var("DKT_CLIENT_S3_CREDENTIALS_FILE", Path(".dkt/secrets/client-s3-credentials"),
                                  "the web client's own S3 credentials (AWS shared-credentials file, 0600; PutObject "
                                  "under the raw prefix only: deploy/iam/client-policy.json); the stack mounts it as "
                                  "a Docker secret", "deploy", kind="path", under_home="secrets/client-s3-credentials")
STACK = _var("DKT_STACK", "dkt", "Swarm stack name", "deploy")
API_PORT = _var("DKT_API_PORT", 8000, "published port of the stack's proxy (POST /predict)", "deploy", kind="int",
                minimum=1, below=65536)
BASE_IMAGE = _var("DKT_BASE_IMAGE", "python:3.11-slim", "base of the built images (make: dkt-base:bookworm)",
                  "deploy")
ROLLOUT_TIMEOUT_S = _var("DKT_ROLLOUT_TIMEOUT_S", 300.0, "a rolling update not settled in time is rolled back (s)",
                         "deploy", kind="float", above=0.0, what="a positive number of seconds")
SMOKE_TIMEOUT_S = _var("DKT_SMOKE_TIMEOUT_S", 30.0, "how long the smoke test waits for the new version (s)",
                       "deploy", kind="float", above=0.0, what="a positive number of seconds")
CLIENT_IMAGE = _var("DKT_CLIENT_IMAGE", None, "client image to deploy (empty: built by make client-image)",
                    "deploy", kind="opt_str")
SWARM_HOST = _var("DKT_SWARM_HOST", None, "Docker API of the Swarm manager the stack goes to (make "
                  "swarm-nodes-deploy: the simulated manager's unix socket); empty: the local daemon. Builds and "
                  "pushes always use the local daemon", "deploy", kind="opt_str")
BUILD_CA_BUNDLE = _var("DKT_BUILD_CA_BUNDLE", None, "CA bundle for image builds behind a TLS-intercepting proxy",
                       "deploy", kind="path")

# Airflow glue
AWS_CONN_ID = _var("DKT_AWS_CONN_ID", "aws_default", "Airflow connection holding the S3 endpoint/credentials",
                   "airflow")
RETRAIN_SCHEDULE = _var("DKT_RETRAIN_SCHEDULE", "@daily", "dkt_retrain schedule (cron, preset, or none)", "airflow")
SENSOR_SCHEDULE = _var("DKT_SENSOR_SCHEDULE", "@continuous", "dkt_ingest_sensor schedule", "airflow")
SENSOR_POKE_S = _var("DKT_SENSOR_POKE_S", 30, "sensor poke interval (s)", "airflow", kind="int", minimum=1)
SENSOR_TIMEOUT_S = _var("DKT_SENSOR_TIMEOUT_S", 3600, "sensor timeout (s)", "airflow", kind="int", minimum=1)
MODELS = _var("DKT_MODELS", ("lgbm", "lstm"), "models the DAG trains (comma-separated)", "airflow", kind="list")
RAW_PREFIX = _var("DKT_RAW_PREFIX", "interactions/", "S3 prefix of raw uploads the sensor watches", "airflow")
S3_TASK_RETRIES = _var("DKT_S3_TASK_RETRIES", 4, "retries of S3 tasks (exponential backoff)", "airflow", kind="int",
                       minimum=0)
S3_RETRY_DELAY_S = _var("DKT_S3_RETRY_DELAY_S", 10, "first retry delay of S3 tasks (s)", "airflow", kind="int",
                        minimum=0)
MODEL_OPTIONS = _var("DKT_MODEL_OPTIONS", "{}", "JSON: model name -> TrainConfig.model_options overrides",
                     "airflow")
DOCKER_TASK_RETRIES = _var("DKT_DOCKER_TASK_RETRIES", 2, "retries of registry/Docker tasks", "airflow", kind="int",
                           minimum=0)
DOCKER_RETRY_DELAY_S = _var("DKT_DOCKER_RETRY_DELAY_S", 30, "first retry delay of Docker tasks (s)", "airflow",
                            kind="int", minimum=0)
TRAIN_QUEUE = _var("DKT_TRAIN_QUEUE", None, "Celery queue of the DAG's train_member tasks (torch training; "
                   "`make airflow-cluster` sets gpu); empty: Airflow's default queue", "airflow", kind="opt_str")
WORKER_NAME = _var("DKT_WORKER_NAME", None, "hostname a Celery worker's tasks record (TaskInstance.hostname; set per "
                   "worker by `make airflow-cluster`); empty: the machine's FQDN", "airflow", kind="opt_str")

# Read outside Python: the stack file, the images, make, scripts and tests (declared so the table is complete).
for _name, _default, _doc, _reader in [
    ("DKT_INFERENCE_IMAGE", "(set by the deployer)", "inference image of the stack (immutable tag)", "compose"),
    ("DKT_PROXY_IMAGE", "127.0.0.1:5000/dkt-proxy:4", "proxy image of the stack", "compose"),
    ("DKT_INFERENCE_REPLICAS", "2", "inference replicas in the stack", "compose"),
    ("DKT_CLIENT_REPLICAS", "1", "web client replicas in the stack", "compose"),
    ("DKT_HEALTH_START_PERIOD", "20s", "inference health check start period", "compose"),
    ("DKT_UPDATE_MONITOR", "28s", "rolling update monitor window", "compose"),
    ("DKT_CLIENT_S3_ENDPOINT_URL", "(empty)", "S3 endpoint as the client container sees it", "compose"),
    ("DKT_CLIENT_BANK_FILE", "./docker/client-bank.empty.json", "bank file shipped as a Docker config", "compose"),
    ("DKT_CLIENT_BANK_ID", "empty", "content name of the bank config", "compose"),
    ("DKT_API_KEYS_SRC", "./docker/api-keys.empty.json", "key-hash file shipped as the Docker secret dkt_api_keys "
     "(set by the deployer)", "compose"),
    ("DKT_API_KEYS_ID", "empty", "content name of the key-hash secret (dkt_api_keys_<sha8>)", "compose"),
    ("DKT_CLIENT_API_KEY_SRC", "./docker/client-api-key.none", "the web client's key file shipped as the Docker "
     "secret dkt_client_api_key (set by the deployer)", "compose"),
    ("DKT_CLIENT_API_KEY_ID", "none", "content name of the client's key secret", "compose"),
    ("DKT_CLIENT_S3_CREDENTIALS_SRC", "./docker/client-s3-credentials.none", "the client's S3 credentials file "
     "shipped as the Docker secret dkt_client_s3 (set by the deployer)", "compose"),
    ("DKT_CLIENT_S3_CREDENTIALS_ID", "none", "content name of the client's S3 credentials secret", "compose"),
    ("DKT_MODEL_VERSION", "(build arg)", "model version label inside the inference image", "image"),
    ("DKT_DATA_VERSION", "(build arg)", "data version label inside the inference image", "image"),
    ("DKT_SERVICE", "(build arg)", "Bento service the inference image serves", "image"),
    ("DKT_BASE_SUITE", "bookworm", "Debian suite of the base image", "scripts/docker/base-image.sh"),
    ("DKT_DEBIAN_MIRROR", "(empty)", "Debian mirror for the base image", "scripts/docker/base-image.sh"),
    ("DKT_NODES", "dkt-nodes", "name of the simulated multi-node Swarm (containers, network, state folder; "
     "make swarm-nodes)", "scripts/docker/swarm-nodes.sh"),
    ("DKT_NODES_WORKERS", "2", "worker nodes of the simulated Swarm (plus one manager)", "scripts/docker/swarm-nodes.sh"),
    ("DKT_NODES_API_PORT", "8100", "proxy port of the simulated Swarm's stack, published on DKT_BIND_HOST from the "
     "manager node", "scripts/docker/swarm-nodes.sh"),
    ("DKT_NODES_REGISTRY_PORT", "5001", "the simulated Swarm's registry (login required), on DKT_BIND_HOST and on "
     "every node's loopback", "scripts/docker/swarm-nodes.sh"),
    ("DKT_NODE_REGISTRY", "(set by swarm-nodes.sh)", "node image: registry on the node network that the node's "
     "loopback forwards to", "image"),
    ("DKT_NODE_REGISTRY_PORT", "(set by swarm-nodes.sh)", "node image: loopback port of that forwarder", "image"),
    ("DKT_PROXY_PLACEMENT", "node.role == manager", "placement constraint of the proxy service (its host-mode "
     "port is where it runs)", "compose"),
    ("DKT_SHARED_DATA", "../shared/data", "real data sets for realdata tests", "tests"),
    ("DKT_TEST_DEVICE", "cpu", "torch device of the model tests", "tests"),
    ("DKT_TEST_INFERENCE_URL", "(empty)", "live service for the browser test's live case", "tests"),
    ("DKT_SCREENSHOT_DIR", "(the test's tmp dir)", "where the browser tests save page PNGs (`make client-screenshots`: "
     "docs/screenshots)", "tests"),
    ("DKT_TEST_API_PORT", "(free port)", "proxy port of the Swarm test stack", "tests"),
    ("DKT_TEST_NODE_KILLS", "1", "node kills in a row in the multi-node Swarm kill test", "tests"),
    ("DKT_TESTSVC_NEVER_READY", "(empty)", "test image: never report ready", "tests"),
    ("DKT_TESTSVC_PREDICT_FAILS", "(empty)", "test image: /predict answers 500", "tests"),
    ("DKT_TESTSVC_READY_DELAY_S", "0", "test image: seconds before ready", "tests"),
]:
    _var(_name, _default, _doc, "outside", reader=_reader)


# Issue 15 item 3: training a log larger than memory (dkt_core/training/stream.py, docs/models.md "Out of core")
TRAIN_OUT_OF_CORE_ROWS = _var("DKT_TRAIN_OUT_OF_CORE_ROWS", 10_000_000, "`dkt train --out-of-core auto` trains "
                              "out of core (every model: LightGBM from feature chunks, the sequence models from windows on disk) "
                              "from a Parquet log of at least this many rows (a CSV: --out-of-core always)", "train", kind="int", minimum=1)
TRAIN_CHUNK_USERS = _var("DKT_TRAIN_CHUNK_USERS", 4096, "out-of-core training: users per chunk (memory follows "
                         "their rows, ~1.2 M at the seed's density)", "train", kind="int", minimum=1)
TRAIN_EVAL_MAX_USERS = _var("DKT_TRAIN_EVAL_MAX_USERS", 20_000, "out-of-core training: validation metrics and "
                            "ensemble weights on a hash sample of at most this many validation users (n in "
                            "metrics.json)", "train", kind="int", minimum=1)
TRAIN_FEATURE_WORKERS = _var("DKT_TRAIN_FEATURE_WORKERS", 2, "out-of-core training: processes computing the "
                             "features of the chunks (each holds one chunk; the result does not depend on it)",
                             "train", kind="int", minimum=1)
TRAIN_WORK_DIR = _var("DKT_TRAIN_WORK_DIR", None, "out-of-core training: scratch folder for chunks and feature "
                      "files (~250 bytes per row, ~200 more for sequence models' windows; removed afterwards); empty: the "
                      "system temp folder", "train",
                      kind="path")

# --- the one parser --------------------------------------------------------------------------------------------

def _field_vars(cls: type) -> list[tuple[str, Var]]:
    return [(f.name, f.metadata["var"]) for f in fields(cls) if "var" in f.metadata]


def home(environ: Mapping[str, str] | None = None) -> Path:
    """``DKT_HOME`` made absolute (the one default: ``.dkt`` in the current directory)."""
    environ = os.environ if environ is None else environ
    return Path(HOME.parse(environ.get(HOME.name, ""))).resolve()


def load(cls: type, environ: Mapping[str, str] | None = None, **overrides: Any) -> Any:
    """An instance of the settings dataclass ``cls`` from ``environ`` (default: the process environment).

    Unset or empty variables take their default; paths declared under ``DKT_HOME`` follow it."""
    environ = os.environ if environ is None else environ
    root = home(environ)
    values: dict[str, Any] = {}
    for name, var in _field_vars(cls):
        if name in overrides:
            continue
        raw = environ.get(var.name, "")
        if not raw.strip() and var.follows:
            raw = environ.get(var.follows, "")
        values[name] = root if var is HOME else var.parse(raw, root)
    return cls(**values, **overrides)


class _Checked:
    """Frozen settings check their values on construction with the same rule the parser uses."""

    def __post_init__(self) -> None:
        for name, var in _field_vars(type(self)):
            value = getattr(self, name)
            if value is not None and var.problem(value) is not None:
                raise ValueError(f"{var.name} ({type(self).__name__}.{name}) must be {var.describe()}, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> typing.Self:
        return load(cls, environ)


# --- the areas ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HomeSettings(_Checked):
    home: Path = setting(HOME)
    bentoml_home: Path = setting(BENTOML_HOME)


def bentoml_home(environ: Mapping[str, str] | None = None) -> Path:
    """The BentoML model store: ``BENTOML_HOME`` or ``~/bentoml`` (the one rule)."""
    return load(HomeSettings, environ).bentoml_home


@dataclass(frozen=True)
class S3Settings(_Checked):
    endpoint_url: str | None = setting(S3_ENDPOINT_URL)
    bucket: str = setting(S3_BUCKET)
    region: str = setting(S3_REGION)


@dataclass(frozen=True)
class ReadLimits(_Checked):
    """Caps on one source: bytes read from it, bytes after gzip decompression (or Parquet decoding),
    and how many times its size a gzip may expand to (past the first ``RATIO_GRACE_BYTES`` of data/io.py).

    Peak memory of reading follows the bytes actually decompressed: the ratio cap stops a gzip bomb
    after ~16 MiB of output, where the decompressed cap alone would let it fill that cap first.
    """

    max_object_bytes: int = setting(INGEST_MAX_OBJECT_BYTES)
    max_decompressed_bytes: int = setting(INGEST_MAX_DECOMPRESSED_BYTES)
    max_compression_ratio: int = setting(INGEST_MAX_COMPRESSION_RATIO)  # real logs compress 6-10 times

    def __post_init__(self) -> None:
        for name in ("max_object_bytes", "max_decompressed_bytes", "max_compression_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReadLimits.{name} must be a positive whole number, got {value!r}")


@dataclass(frozen=True)
class IngestSettings(_Checked):
    lease_ttl_s: int = setting(INGEST_LEASE_TTL_S)
    max_run_bytes: int = setting(INGEST_MAX_RUN_BYTES)


@dataclass(frozen=True)
class RetrainSettings(_Checked):
    # Users whose stable hash bucket is below this never train: the fixed hold-out set of the gate.
    # Changing it (or the salt) changes the hold-out, so champion and challenger metrics stop being
    # comparable: it is an environment setting, not a per-run parameter.
    holdout_fraction: float = setting(HOLDOUT_FRACTION)
    holdout_salt: str = setting(HOLDOUT_SALT)
    gate_tolerance: float = setting(GATE_TOLERANCE)  # promote if challenger AUC >= champion AUC - tolerance
    deploy: str = setting(DEPLOY_MODE)  # "none": promotion = package + champion alias (machines without Docker)
    cache_dir: Path = setting(RETRAIN_CACHE)  # local copies of immutable S3 objects
    # User-bootstrap replicates (fixed seed) of every interval: hold-out AUCs, the gate's paired
    # difference, live AUC, drift.
    bootstrap: int = setting(EVAL_BOOTSTRAP)
    bootstrap_seed: int = 0
    # A batch retrains only when the answered rows added since the last training reach both (the DAG's
    # min_new_rows / min_new_users params default to these).
    min_new_rows: int = setting(MIN_NEW_ROWS)
    min_new_users: int = setting(MIN_NEW_USERS)
    # Live AUC and drift on fewer rows or users than this are reported but marked "too few to judge".
    judge_min_rows: int = setting(JUDGE_MIN_ROWS)
    judge_min_users: int = setting(JUDGE_MIN_USERS)
    # Days after its newest object that a never-committed run's runs/<run>/train/ is kept for its retry
    # (0: kept until deleted by hand); a committed run's scratch goes at once (dkt_core.retrain.scratch).
    train_scratch_days: int = setting(TRAIN_SCRATCH_DAYS)

    def too_few(self, n_rows: int, n_users: int) -> str | None:
        """Why a metric on ``n_rows`` rows of ``n_users`` users cannot be judged (None: enough)."""
        if n_rows < self.judge_min_rows or n_users < self.judge_min_users:
            return (f"too few to judge: {n_rows} rows from {n_users} users (needs {self.judge_min_rows} rows and "
                    f"{self.judge_min_users} users: DKT_JUDGE_MIN_ROWS / DKT_JUDGE_MIN_USERS)")
        return None


@dataclass(frozen=True)
class TrainSettings(_Checked):
    out_of_core_rows: int = setting(TRAIN_OUT_OF_CORE_ROWS)
    chunk_users: int = setting(TRAIN_CHUNK_USERS)
    eval_max_users: int = setting(TRAIN_EVAL_MAX_USERS)
    feature_workers: int = setting(TRAIN_FEATURE_WORKERS)
    work_dir: Path | None = setting(TRAIN_WORK_DIR)


@dataclass(frozen=True)
class ServingSettings(_Checked):
    model_tag: str = setting(MODEL_TAG)
    port: int = setting(SERVE_PORT)
    workers: int = setting(SERVE_WORKERS)
    batch_max_students: int = setting(BATCH_MAX_STUDENTS)
    batch_max_latency_ms: int = setting(BATCH_MAX_LATENCY_MS)
    keepalive_requests: int = setting(KEEPALIVE_REQUESTS)
    torch_threads: int = setting(TORCH_THREADS)
    history_window: int = setting(HISTORY_WINDOW)
    api_auth: bool = setting(API_AUTH)
    api_keys_file: Path = setting(API_KEYS_FILE)


@dataclass(frozen=True)
class ClientServerSettings(_Checked):
    """How gunicorn runs the web client (read by gunicorn_conf.py)."""

    host: str = setting(CLIENT_HOST)
    port: int = setting(CLIENT_PORT)
    workers: int = setting(CLIENT_WORKERS)
    threads: int = setting(CLIENT_THREADS)


@dataclass(frozen=True)
class AirflowSettings(_Checked):
    aws_conn_id: str = setting(AWS_CONN_ID)
    retrain_schedule: str = setting(RETRAIN_SCHEDULE)
    sensor_schedule: str = setting(SENSOR_SCHEDULE)
    sensor_poke_s: int = setting(SENSOR_POKE_S)
    sensor_timeout_s: int = setting(SENSOR_TIMEOUT_S)
    models: tuple[str, ...] = setting(MODELS)
    raw_prefix: str = setting(RAW_PREFIX)
    s3_task_retries: int = setting(S3_TASK_RETRIES)
    s3_retry_delay_s: int = setting(S3_RETRY_DELAY_S)
    gate_tolerance: float = setting(GATE_TOLERANCE)
    min_new_rows: int = setting(MIN_NEW_ROWS)
    min_new_users: int = setting(MIN_NEW_USERS)
    model_options: str = setting(MODEL_OPTIONS)
    docker_task_retries: int = setting(DOCKER_TASK_RETRIES)
    docker_retry_delay_s: int = setting(DOCKER_RETRY_DELAY_S)
    train_queue: str | None = setting(TRAIN_QUEUE)
    worker_name: str | None = setting(WORKER_NAME)


@dataclass(frozen=True)
class ClientSettings(_Checked):
    """The web client. No secret is ever in the environment: the session key and the answer-key secret live
    in files (created 0600 when absent); S3 credentials come from boto3's chain."""

    bank_path: Path = required(CLIENT_BANK)
    spool_dir: Path = required(CLIENT_SPOOL_DIR)
    state_db: Path = required(CLIENT_STATE_DB)
    api_url: str = required(API_URL)
    api_timeout_s: float = setting(API_TIMEOUT_S)
    spool_max_rows: int = setting(SPOOL_MAX_ROWS)
    spool_max_age_s: float = setting(SPOOL_MAX_AGE_S)
    flush_interval_s: float = setting(FLUSH_INTERVAL_S)
    create_bucket: bool = setting(S3_CREATE_BUCKET)
    secret_key_file: Path | None = setting(CLIENT_SECRET_KEY_FILE)  # None: beside the state database
    answer_key_file: Path | None = setting(CLIENT_ANSWER_KEY_FILE)  # None: beside the bank
    api_key_file: Path = setting(CLIENT_API_KEY_FILE)  # a file, never the env
    cookie_secure: bool = setting(CLIENT_COOKIE_SECURE)
    session_hours: float = setting(CLIENT_SESSION_HOURS)
    answer_limit: str = setting(CLIENT_ANSWER_LIMIT)
    login_limit: str = setting(CLIENT_LOGIN_LIMIT)
    login_user_limit: str = setting(CLIENT_LOGIN_USER_LIMIT)
    signup_limit: str = setting(CLIENT_SIGNUP_LIMIT)
    practice_target: float = setting(CLIENT_PRACTICE_TARGET)
    practice_length: int = setting(CLIENT_PRACTICE_LENGTH)
    show_prediction: bool = setting(CLIENT_SHOW_PREDICTION)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.state_db.parent / "session.secret"

    @property
    def answer_key_path(self) -> Path:
        return self.answer_key_file or self.bank_path.parent / "answer_key.secret"


@dataclass(frozen=True)
class DeploySettings(_Checked):
    """Images, registry and the Swarm stack (embedded defaults: loopback registry and proxy)."""

    registry: str = setting(REGISTRY)
    stack: str = setting(STACK)
    inference_repo: str = "dkt-inference"
    proxy_repo: str = "dkt-proxy"
    client_repo: str = "dkt-client"
    api_port: int = setting(API_PORT)
    client_port: int = setting(CLIENT_PORT)
    base_image: str = setting(BASE_IMAGE)
    home: Path = setting(HOME)
    # How long a rolling update may take to settle before it counts as failed (and is rolled back), and
    # how long the smoke test through the proxy may wait for the new version.
    rollout_timeout_s: float = setting(ROLLOUT_TIMEOUT_S)
    smoke_timeout_s: float = setting(SMOKE_TIMEOUT_S)
    client_image: str | None = setting(CLIENT_IMAGE)
    swarm_host: str | None = setting(SWARM_HOST)  # None: the local daemon is the Swarm manager
    client_bank: Path | None = setting(CLIENT_BANK, default=None)  # None: home / client / bank.json
    build_ca_bundle: Path | None = setting(BUILD_CA_BUNDLE)
    registry_user: str = setting(REGISTRY_USER)
    registry_password_file: Path = setting(REGISTRY_PASSWORD_FILE)
    client_s3_credentials: Path = setting(CLIENT_S3_CREDENTIALS_FILE)
    git_sha: str = setting(GIT_SHA)  # only when git cannot tell

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "registry", self.registry.rstrip("/"))

    def image(self, repo: str, tag: str) -> str:
        """Fully qualified reference in the configured registry (empty registry = Docker Hub names)."""
        return f"{self.registry}/{repo}:{tag}" if self.registry else f"{repo}:{tag}"

    @property
    def service(self) -> str:
        """Swarm name of the inference service (stack deploy prefixes the stack name)."""
        return f"{self.stack}_inference"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


AREAS: tuple[type, ...] = (HomeSettings, S3Settings, ReadLimits, IngestSettings, RetrainSettings, TrainSettings,
                           ServingSettings, ClientServerSettings, ClientSettings, DeploySettings, AirflowSettings)


def load_all(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every area loaded (``dkt settings`` prints them; a bad value anywhere is named at once)."""
    return {cls.__name__: load(cls, environ) for cls in AREAS}


# --- the table ---------------------------------------------------------------------------------------------------

AREA_TITLES = {"home": "home", "s3": "S3", "ingest": "ingestion", "retrain": "retraining", "train": "training",
               "serving": "serving", "client": "web client", "deploy": "deployment", "airflow": "Airflow",
               "outside": "stack, images, tests"}


def markdown_table() -> str:
    """The README's configuration table, generated from ``VARS`` (tests/unit/test_settings.py keeps them equal)."""
    lines = ["| variable | area | default | meaning |", "|---|---|---|---|"]
    order = list(AREA_TITLES)
    for var in sorted(VARS.values(), key=lambda v: (order.index(v.area), v.name)):
        meaning = var.doc + (f" (read by {var.reader})" if var.reader else "")
        lines.append(f"| `{var.name}` | {AREA_TITLES[var.area]} | `{var.default_text}` | {meaning} |")
    return "\n".join(lines) + "\n"
