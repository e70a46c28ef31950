"""One socket write per reply (dkt_core.serving.one_write) through a real uvicorn server on loopback, with
each protocol the service can get (httptools, h11): the transport's writes are recorded as uvicorn makes
them (each one is a send syscall), and the replies are read back by a real HTTP client."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dkt_core.serving import one_write

PROTOCOLS = ("httptools", "h11")


class _Recorder:
    """The connection's real transport; every ``write`` uvicorn makes is recorded before it goes on."""

    def __init__(self, transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data) -> None:
        if data:  # an empty write sends nothing
            self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _recording(protocol: str, writes: list[bytes]) -> type:
    if protocol == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class Recording(base):
        def connection_made(self, transport) -> None:
            super().connection_made(_Recorder(transport, writes))

    return Recording


async def _json(request):
    return JSONResponse({"results": [0.25] * 40, "path": request.url.path})


async def _stream(request):
    async def chunks():
        for part in (b"first,", b"second,", b"third"):
            yield part
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/plain")


async def _empty(request):
    return Response(status_code=204)


async def _big(request):
    return Response(b"x" * 2_000_000, media_type="application/octet-stream")


async def _close(request):
    return JSONResponse({"bye": True}, headers={"connection": "close"})


starlette_app = Starlette(routes=[Route("/json", _json, methods=["GET", "HEAD", "POST"]), Route("/stream", _stream),
                                  Route("/empty", _empty), Route("/big", _big), Route("/close", _close)])


async def app(scope, receive, send):
    """The Starlette routes, plus a raw ASGI route that fails after its start (uvicorn then closes)."""
    if scope["type"] == "http" and scope["path"] == "/fails":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        raise RuntimeError("the app failed between its start and its body")
    await starlette_app(scope, receive, send)


@contextmanager
def serving(protocol: str, *, one: bool, loop: str = "asyncio"):
    """A real uvicorn server of ``app`` on a free loopback port, with or without one_write installed;
    yields (port, writes)."""
    was = one_write.installed()
    one_write.install() if one else one_write.uninstall()
    writes: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=_recording(protocol, writes), loop=loop, log_level="critical",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()[1], writes
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        one_write.install() if was else one_write.uninstall()


def _get(port: int, method: str, path: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def _replies(writes: list[bytes]) -> list[list[bytes]]:
    """The writes grouped per reply (a reply's head starts a write)."""
    out: list[list[bytes]] = []
    for w in writes:
        if w.startswith(b"HTTP/1.1 "):
            out.append([w])
        else:
            out[-1].append(w)
    return out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # BentoML's workers run uvloop
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_reply_is_one_write_with_it_and_two_without(protocol, loop):
    for one, expected in ((True, 1), (False, 2)):
        with serving(protocol, one=one, loop=loop) as (port, writes):
            for method in ("GET", "POST"):
                resp, data = _get(port, method, "/json", b"{}" if method == "POST" else None)
                assert resp.status == 200 and data == JSONResponse({"results": [0.25] * 40, "path": "/json"}).body
                assert resp.getheader("content-length") == str(len(data))
        replies = _replies(writes)
        assert [len(r) for r in replies] == [expected, expected], (one, replies)
        assert b"".join(replies[0]).endswith(data)  # head and body, in order, nothing else


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_head_204_keep_alive_and_connection_close(protocol):
    with serving(protocol, one=True) as (port, writes):
        resp, data = _get(port, "HEAD", "/json")
        assert resp.status == 200 and data == b"" and int(resp.getheader("content-length")) > 0
        resp, data = _get(port, "GET", "/empty")
        assert resp.status == 204 and data == b""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # two replies on one connection
        for _ in range(2):
            conn.request("GET", "/json")
            r = conn.getresponse()
            assert r.status == 200 and b'"path":"/json"' in r.read()
        conn.close()
        resp, data = _get(port, "GET", "/close")
        assert resp.status == 200 and data == b'{"bye":true}' and resp.getheader("connection") == "close"
    replies = _replies(writes)
    assert [len(r) for r in replies] == [1, 1, 1, 1, 1]
    assert replies[0][0].endswith(b"\r\n\r\n")  # HEAD: the head alone
    assert replies[4][0].endswith(b'{"bye":true}')


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_streamed_reply_sends_its_head_with_its_first_chunk(protocol):
    with serving(protocol, one=True) as (port, writes):
        resp, data = _get(port, "GET", "/stream")
        assert resp.status == 200 and data == b"first,second,third"
        resp, data = _get(port, "GET", "/big")
        assert resp.status == 200 and data == b"x" * 2_000_000
    stream, big = _replies(writes)
    head, _, first = stream[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower() and first == b"6\r\nfirst,\r\n"
    assert b"".join(stream[1:]) == b"7\r\nsecond,\r\n5\r\nthird\r\n0\r\n\r\n"
    assert len(big) == 1 and big[0].endswith(b"x" * 2_000_000)  # one write (the transport sends the rest)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_app_failing_after_its_start_leaves_no_head_without_body(protocol):
    for one in (True, False):
        with serving(protocol, one=one) as (port, writes):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
            resp, data = _get(port, "GET", "/json")  # the server goes on
            assert resp.status == 200
        if one:
            assert got == b"" and writes[0].startswith(b"HTTP/1.1 200") and b'"path"' in writes[0]
        else:  # uvicorn alone: the head went out, then the connection closed without the promised body
            assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n")


def test_install_is_idempotent_and_uninstall_restores_uvicorn():
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    was = one_write.installed()
    try:
        one_write.uninstall()
        shipped = RequestResponseCycle.send
        assert not one_write.installed()
        assert one_write.install() and one_write.install() and one_write.installed()
        assert RequestResponseCycle.send.__wrapped__ is shipped  # wrapped once
        one_write.uninstall()
        assert RequestResponseCycle.send is shipped
    finally:
        one_write.install() if was else one_write.uninstall()
