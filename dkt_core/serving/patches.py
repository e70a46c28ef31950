"""Fixes for BentoML 1.4, applied by the service at import.

1. Quiet client errors (``quiet_client_errors``). BentoML logs every request it answers with 4xx (a
   pydantic ``ValidationError`` of the body, an ``InvalidArgument``) at ERROR with the full traceback: one
   malformed request per second buried real failures and grew the logs by ~60 lines a request. A 4xx now
   logs one WARNING line (method, path, status, short reason) next to BentoML's access line; a 5xx keeps
   BentoML's traceback.

2. The request-timeout middleware (``patch_timeout_middleware``).

``bentoml._internal.server.http.traffic.TimeoutMiddleware`` arms ``loop.call_later(timeout, ...)`` for every
request and never cancels it. Each armed timer keeps the request's contextvars alive (the OpenTelemetry
span with its attributes) until the timeout passes: with ``traffic.timeout=30`` s and 1,000 requests/s
that is ~30,000 live timers, +3.5 KB of heap per request, and the garbage collector walking all of it,
so throughput fell by ~30 % and p99 tripled within a minute of steady load (measured with
tracemalloc and the serving benchmark). The replacement below behaves the same (504 when no response
has started within the timeout) and cancels its timer as soon as the request is answered.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from starlette.responses import JSONResponse

log = logging.getLogger(__name__)
SHIPPED: dict[str, object] = {}  # BentoML's own __call__, kept when the fix is installed (tests compare)


async def _timeout_call(self, scope, receive, send) -> None:
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await waiter
    except TimeoutError:
        if fut.cancel():
            resp = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                status_code=504)
            await resp(scope, receive, send)
    else:
        await fut
    finally:
        timer.cancel()  # answered (or timed out): drop the timer and the request context it holds


def patch_timeout_middleware() -> bool:
    """Install the fix; False (and a warning) when BentoML's middleware no longer has the expected shape."""
    from bentoml._internal.server.http import traffic

    cls = getattr(traffic, "TimeoutMiddleware", None)
    if cls is None or not hasattr(cls, "_set_timer_out"):
        log.warning("bentoml TimeoutMiddleware changed; request-timeout timer fix not applied")
        return False
    if cls.__call__ is not _timeout_call:
        SHIPPED.setdefault("TimeoutMiddleware.__call__", cls.__call__)
        cls.__call__ = _timeout_call
    return True


REASON_MAX_CHARS = 300


def client_error(exc: BaseException | None) -> tuple[int, str] | None:
    """(status, one-line reason) when BentoML answers ``exc`` with a 4xx; None for server errors."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        reason = f"{'.'.join(map(str, first['loc'])) or exc.title}: {first['msg']}"
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more)"
        return 400, _one_line(reason)
    if isinstance(exc, BentoMLException) and 400 <= int(exc.error_code) < 500:
        return int(exc.error_code), _one_line(str(exc))
    return None


def _one_line(text: str) -> str:
    # request values can carry newlines: escape them so one request stays one log line
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= REASON_MAX_CHARS else text[:REASON_MAX_CHARS] + "..."


def quiet_client_errors() -> bool:
    """Make BentoML log a 4xx as one line instead of a traceback; False when its shape changed."""
    try:
        from _bentoml_impl.server import app as server_app
        from bentoml._internal.server import http_app
    except ImportError:
        log.warning("bentoml server modules moved; 4xx requests keep their tracebacks in the log")
        return False
    shipped = getattr(server_app, "log_exception", None)
    if shipped is None:
        log.warning("bentoml log_exception not found; 4xx requests keep their tracebacks in the log")
        return False
    if getattr(shipped, "__name__", "") == "_log_exception":
        return True  # already installed
    SHIPPED.setdefault("log_exception", shipped)
    logger = http_app.logger  # the logger BentoML's own request errors go to (configured by bentoml serve)

    def _log_exception(request, exc_info=True) -> None:
        found = client_error(sys.exc_info()[1])
        if found is None:
            return shipped(request, exc_info)
        status, reason = found
        logger.warning("%s %s %d: %s", request.method, request.url.path, status, reason)

    server_app.log_exception = _log_exception
    return True
