"""One socket write for a reply's head and the start of its body (uvicorn under BentoML 1.4).

Why: uvicorn writes the status line and headers when the app sends ``http.response.start`` and the body
when it sends ``http.response.body``: two ``write`` syscalls, so two TCP segments (TCP_NODELAY), with
BentoML's middlewares (OpenTelemetry, metrics, access log, timeout) running in between. Measured with
``strace -f -e trace=write,sendto,sendmsg,writev`` on a local ``bentoml serve`` of bento_service: every
non-HEAD reply was 2 writes, 270 µs apart at the median (p90 1.4 ms, under strace). A node killed in that
gap leaves the proxy with a reply whose head arrived and whose body never will: nginx can retry neither a
reply it has started to pass on nor a POST. An ASGI middleware cannot close the gap: uvicorn writes each
message as it gets it, so even a start and a body sent back to back are 2 syscalls (checked on uvloop and
asyncio alike), and uvicorn and BentoML have no option for it.

What ``install`` does: it wraps ``send`` of uvicorn's HTTP cycles (httptools and h11). The bytes uvicorn
writes for ``http.response.start`` are held and written together with the bytes of the first
``http.response.body`` (one ``transport.write``, one syscall): a reply with one body message (every route of
the service, errors included) goes out in one write; HEAD, 204 and 304 replies, which have no body bytes,
are written when their (empty) body message comes. A streamed reply's head goes out with its first chunk.
uvicorn's own code does all the HTTP work unchanged (headers, Content-Length and chunking checks,
keep-alive); only the moment the head is handed to the transport moves. If the app fails after the start
and before a body, the head is never written: the client sees the connection close with no reply, which a
proxy can retry, instead of a head with no body.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)
SHIPPED: dict[str, Any] = {}  # uvicorn's own send per cycle class, kept when the wrapper is installed
_HELD = "_dkt_held_head"


class _Holding:
    """The cycle's transport while uvicorn handles ``http.response.start``: writes are kept, not sent."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.held.append(bytes(data))

    def __getattr__(self, name: str) -> Any:  # is_closing, close, get_extra_info, ...: the real transport
        return getattr(self.transport, name)


class _Prefixed:
    """The cycle's transport while uvicorn handles the first ``http.response.body``: its first write goes
    out as head + body in one ``write``."""

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport = transport
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, None
        self.transport.write(head + bytes(data) if head is not None else data)

    def flush(self) -> None:
        if self.head is not None:
            head, self.head = self.head, None
            self.transport.write(head)

    def close(self) -> None:  # a "connection: close" reply is closed right after its last write
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _wrap(original):
    @functools.wraps(original)
    async def send(self, message) -> None:
        kind = message.get("type")
        if kind == "http.response.start" and not self.response_started:
            hold = _Holding(self.transport)
            self.transport = hold
            try:
                await original(self, message)
            finally:
                self.transport = hold.transport
            if hold.held:
                setattr(self, _HELD, b"".join(hold.held))
            return
        head = getattr(self, _HELD, None)
        if head is None or kind != "http.response.body":
            await original(self, message)
            return
        setattr(self, _HELD, None)
        prefixed = _Prefixed(self.transport, head)
        self.transport = prefixed
        try:
            await original(self, message)  # an exception here: the head is dropped with the reply
        finally:
            self.transport = prefixed.transport
        if not self.disconnected:
            prefixed.flush()  # no body bytes were written (HEAD, 204/304, an empty first chunk)

    send.__dkt_one_write__ = True
    return send


def _cycle_classes() -> list[type]:
    out = []
    for module in ("uvicorn.protocols.http.httptools_impl", "uvicorn.protocols.http.h11_impl"):
        try:
            mod = __import__(module, fromlist=["RequestResponseCycle"])
        except ImportError:  # httptools (or h11) not installed: uvicorn cannot pick that protocol either
            continue
        cls = getattr(mod, "RequestResponseCycle", None)
        if cls is not None:
            out.append(cls)
    return out


def install() -> bool:
    """Wrap uvicorn's cycles' ``send``; False (and a warning) when uvicorn no longer has the expected shape."""
    classes = _cycle_classes()
    if not classes:
        log.warning("uvicorn has no RequestResponseCycle; one-write replies not installed")
        return False
    for cls in classes:
        send = cls.__dict__.get("send")
        if send is None or not callable(send):
            log.warning("uvicorn %s.send changed; one-write replies not installed", cls.__module__)
            return False
    for cls in classes:
        if not getattr(cls.send, "__dkt_one_write__", False):
            SHIPPED[f"{cls.__module__}.send"] = cls.send
            cls.send = _wrap(cls.send)
    return True


def uninstall() -> None:
    """uvicorn's own ``send`` back (tests compare both)."""
    for cls in _cycle_classes():
        original = SHIPPED.pop(f"{cls.__module__}.send", None)
        if original is not None:
            cls.send = original


def installed() -> bool:
    return all(getattr(cls.send, "__dkt_one_write__", False) for cls in _cycle_classes())
