"""HTTP-level pieces of serving that need no model: the keep-alive limit middleware, the fix for BentoML's
request-timeout timers, and the asyncio load generator's handling of ``Connection: close``."""

from __future__ import annotations

import asyncio
import threading

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from devtools.loadgen import run_load
from dkt_core.serving import patches
from dkt_core.serving.keepalive import MaxRequestsPerConnection


async def _ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _request(app, client=("127.0.0.1", 5000)) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "client": client, "path": "/", "headers": []}, receive, send)
    return sent


def _connection_header(sent: list[dict]) -> bytes | None:
    return dict(sent[0]["headers"]).get(b"connection")


def test_every_nth_request_of_a_connection_is_answered_with_close():
    app = MaxRequestsPerConnection(_ok_app, max_requests=3)

    async def scenario():
        a = [_connection_header(await _request(app, ("10.0.0.1", 1))) for _ in range(7)]
        b = _connection_header(await _request(app, ("10.0.0.1", 2)))  # another connection keeps its own count
        return a, b

    a, b = asyncio.run(scenario())
    assert a == [None, None, b"close", None, None, b"close", None]
    assert b is None


def test_keepalive_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_requests"):
        MaxRequestsPerConnection(_ok_app, max_requests=0)


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(not h.cancelled() for h in loop._scheduled)  # noqa: SLF001 - the leak is exactly this heap


def test_timeout_middleware_leaves_no_timer_behind(monkeypatch):
    # BentoML as shipped, even when the service module (which installs the fix) was imported earlier
    shipped = patches.SHIPPED.get("TimeoutMiddleware.__call__", TimeoutMiddleware.__call__)
    monkeypatch.setattr(TimeoutMiddleware, "__call__", shipped)  # monkeypatch restores the class afterwards

    async def live_after_one_request() -> int:
        await _request(TimeoutMiddleware(_ok_app, timeout=30))
        return _live_timers(asyncio.get_running_loop())

    assert asyncio.run(live_after_one_request()) == 1  # BentoML as shipped: a 30 s timer per answered request
    assert patches.patch_timeout_middleware()
    assert asyncio.run(live_after_one_request()) == 0


def test_patched_timeout_middleware_still_answers_504(monkeypatch):
    monkeypatch.setattr(TimeoutMiddleware, "__call__", TimeoutMiddleware.__call__)
    assert patches.patch_timeout_middleware()

    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    sent = asyncio.run(_request(TimeoutMiddleware(slow_app, timeout=0.05)))
    assert sent[0]["status"] == 504


class _ClosingServer:
    """A tiny HTTP/1.1 server on loopback that closes the connection after every ``every``-th reply."""

    def __init__(self, every: int):
        self.every = every
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        served = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            served += 1
            close = served % self.every == 0
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         + (b"Connection: close\r\n" if close else b"") + b"\r\nok")
            await writer.drain()
            if close:
                writer.close()
                return

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_load_generator_reconnects_after_connection_close():
    server = _ClosingServer(every=3)
    try:
        res = run_load(f"http://127.0.0.1:{server.port}/predict", b"{}", clients=2, duration_s=5, max_requests=30)
    finally:
        server.stop()
    summary = res.summary(1)
    assert summary["requests"] == 30 and summary["non_2xx"] == 0, summary
    assert server.connections >= 10  # 30 requests, a new connection every 3
