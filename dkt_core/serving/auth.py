"""``ApiKeyAuth``: ASGI middleware that lets a request through only with ``Authorization: Bearer <key>`` of an
active key, and counts requests per key name.

Deny by default: every path needs a key except the health checks (``/livez``, ``/readyz``), so a route
added later is protected without anyone remembering to list it. A missing, malformed, unknown or revoked
key gets 401 with ``{"error": "<reason>"}`` and ``WWW-Authenticate: Bearer`` (RFC 6750); the key itself is
never logged, echoed or used as a metric label.

``dkt_api_requests_total{key_name, route, status, model_version}`` counts every request that reached the middleware
(refused ones under ``key_name="(none)"`` / ``"(unknown)"``, a revoked key under its name). ``route`` is the
path of a known route or ``other``, ``model_version`` the served model's version (``(loading)`` before it is
known), so random paths cannot grow the label set. The Prometheus counter is
created on the first request: BentoML's workers set up Prometheus' multiprocess directory after importing
the service, and a metric made before that would never reach ``/metrics``.

The API documentation (GET ``/``, ``/docs.json`` and Swagger UI's ``/static_content/`` files) is open too: a
browser cannot send a Bearer key when it loads the page; the document holds no data, and every call made
from it needs a key (Swagger UI's "Authorize").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from dkt_core.serving.apikeys import MAX_KEY_CHARS, KeySet

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

OPEN_PATHS = frozenset({"/livez", "/readyz"})
DOCS_PATHS = frozenset({"/", "/docs.json"})  # GET only
DOCS_PREFIX = "/static_content/"
LABELS = ("key_name", "route", "status", "model_version")
ROUTES = frozenset({"/predict", "/predict_batched", "/knowledge_state", "/version", "/metrics"})
METRIC = "dkt_api_requests_total"
HELP = "API requests by key name, route, status and served model version"
NO_KEY, UNKNOWN_KEY, AUTH_OFF = "(none)", "(unknown)", "(auth off)"  # not valid key names: never collide


class RequestCounter:
    """``dkt_api_requests_total`` in ``registry`` (default: prometheus_client's, made once per process)."""

    _default: Any = None

    def __init__(self, registry: Any = None):
        self._registry = registry
        self._counter: Any = None

    def _make(self) -> Any:
        from prometheus_client import REGISTRY, Counter  # imported late: see the module docstring

        if self._registry is None:
            if RequestCounter._default is None:
                RequestCounter._default = Counter(METRIC, HELP, LABELS, registry=REGISTRY)
            return RequestCounter._default
        return Counter(METRIC, HELP, LABELS, registry=self._registry)

    def inc(self, key_name: str, route: str, status: int, model_version: str = "") -> None:
        if self._counter is None:
            self._counter = self._make()
        self._counter.labels(key_name=key_name, route=route, status=str(status),
                             model_version=model_version or "(loading)").inc()


def bearer_token(scope: Scope) -> tuple[str | None, str | None]:
    """(token, None) from the one ``Authorization: Bearer <token>`` header, or (None, why not)."""
    values = [v for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
    if not values:
        return None, "missing API key: send the header 'Authorization: Bearer <key>'"
    if len(values) > 1:
        return None, "malformed Authorization: more than one Authorization header"
    try:
        scheme, _, token = values[0].decode("ascii").strip().partition(" ")
    except UnicodeDecodeError:
        return None, "malformed Authorization header: not ASCII"
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "malformed Authorization header: expected 'Bearer <key>'"
    if len(token) > MAX_KEY_CHARS or any(c.isspace() for c in token):
        return None, "malformed API key"
    return token, None


def route_label(path: str) -> str:
    return path if path in ROUTES or path in OPEN_PATHS or path in DOCS_PATHS else "other"


class ApiKeyAuth:
    """``keys=None`` turns authentication off (``DKT_API_AUTH=0``, local development); requests are still
    counted."""

    def __init__(self, app: ASGIApp, keys: KeySet | None, counter: RequestCounter | None = None,
                 open_paths: frozenset[str] = OPEN_PATHS, model_version: Callable[[], str] = str):
        self.app = app
        self.keys = keys
        self.counter = counter or RequestCounter()
        self.open_paths = open_paths
        self.model_version = model_version  # the served model's version, for the counter's label

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = route_label(path)
        if path in self.open_paths:
            await self.app(scope, receive, send)  # health checks: open, and not counted (polled every 2 s)
            return
        if scope.get("method") == "GET" and (path in DOCS_PATHS or path.startswith(DOCS_PREFIX) and ".." not in path):
            await self.app(scope, receive, send)  # the API documentation: open, not counted
            return
        if self.keys is None:
            name, error = AUTH_OFF, None
        else:
            token, error = bearer_token(scope)
            name = NO_KEY
            if token is not None:
                verdict = self.keys.verify(token)
                name, error = verdict.name or UNKNOWN_KEY, verdict.error
        if error is not None:
            log.warning("401 %s %s: %s (key name %s)", scope.get("method", "?"), path[:200], error, name)
            self.counter.inc(name, route, 401, self.model_version())
            await _unauthorized(send, error)
            return
        status = 500  # the app raised before it answered

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.counter.inc(name, route, status, self.model_version())


async def _unauthorized(send, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    challenge = b'Bearer realm="dkt"' if reason.startswith("missing") else \
        b'Bearer realm="dkt", error="invalid_token"'
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge)]})
    await send({"type": "http.response.body", "body": body})


def load_keys(auth: bool, keys_file) -> KeySet | None:
    """The key set the service enforces: read from ``keys_file`` at start-up, or None when ``auth`` is off.
    A missing or malformed file is an error that stops the service (it never starts open by accident)."""
    if not auth:
        log.warning("DKT_API_AUTH is off: the API answers anyone (local development only)")
        return None
    keys = KeySet.load(keys_file)
    log.info("API keys: %d active, %d revoked, from %s", keys.active, len(keys.records) - keys.active, keys_file)
    return keys
