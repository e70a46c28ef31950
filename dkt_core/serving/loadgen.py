"""A bounded loopback HTTP load generator: N concurrent keep-alive clients POST one pre-encoded body for a
fixed duration (or request count); every response status is counted. Low overhead on purpose (asyncio,
raw HTTP/1.1, no JSON parsing of replies) because it shares the machine's 2 cores with the server; its
own CPU time is reported next to the numbers.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from dkt_core.loopback import MAX_REQUESTS, MAX_SECONDS, check_target


@dataclass
class LoadResult:
    clients: int
    requests: int
    seconds: float
    latencies_ms: np.ndarray
    statuses: Counter = field(default_factory=Counter)
    errors: int = 0  # connection failures / timeouts (no HTTP status)
    cpu_s: float = 0.0  # the generator's own CPU seconds

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300) + self.errors

    def summary(self, predictions_per_request: int) -> dict:
        lat = self.latencies_ms
        ok = self.requests - self.non_2xx
        return {
            "clients": self.clients, "requests": self.requests, "non_2xx": self.non_2xx,
            "status_503": self.statuses.get(503, 0), "statuses": dict(self.statuses),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "req_per_s": round(self.requests / self.seconds, 1),
            "pred_per_s": round(ok * predictions_per_request / self.seconds, 1),
            "loadgen_cpu_pct": round(100 * self.cpu_s / self.seconds, 1),
        }


def _request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive): a reply with ``Connection: close`` ends the connection, as in any HTTP client."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length, chunked, keep_alive = 0, False, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and "close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


async def _client(url: str, payload: bytes, deadline: float, budget: list[int], lat: list[float],
                  statuses: Counter, errors: list[int], timeout: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = _request_bytes(host, port, parts.path or "/", payload)
    reader = writer = None
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.write(request)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout)
            statuses[status] += 1
            lat.append((time.perf_counter() - start) * 1000)
            if not keep_alive:
                writer.close()
                reader = writer = None
        except (TimeoutError, OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            errors[0] += 1
            lat.append((time.perf_counter() - start) * 1000)
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(url: str, payload: bytes, clients: int, duration_s: float, max_requests: int = 100_000,
             timeout_s: float = 30.0) -> LoadResult:
    """``clients`` concurrent connections for ``duration_s`` (bounded by ``max_requests`` in total).

    The same loopback guard and caps as the deploy load generator apply."""
    check_target(url)
    duration_s, max_requests = min(duration_s, MAX_SECONDS), min(max_requests, MAX_REQUESTS)
    lat: list[float] = []
    statuses: Counter = Counter()
    errors = [0]
    budget = [max_requests]

    async def main() -> float:
        start = time.monotonic()
        deadline = start + duration_s
        await asyncio.gather(*(_client(url, payload, deadline, budget, lat, statuses, errors, timeout_s)
                               for _ in range(clients)))
        return time.monotonic() - start

    cpu0 = _cpu()
    seconds = asyncio.run(main())
    return LoadResult(clients, len(lat), seconds, np.asarray(lat), statuses, errors[0], _cpu() - cpu0)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
