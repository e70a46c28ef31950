"""The one bounded loopback HTTP load generator (tests and benchmarks; not shipped).

An asyncio core: N concurrent keep-alive clients send one pre-encoded request (GET or POST) until a request
budget or a time budget is spent (both capped), over raw HTTP/1.1 with no JSON parsing of replies, because it
shares the machine's cores with the server; its own CPU time is reported next to the numbers. Every reply is
counted by status, every failure by cause ("HTTP 502", or the exception's name), and every success by the
``model_version`` in its body, on a timeline (seconds since start, version) that a rollout test reads.

Two ways to run it:
- ``run_load(url, body, clients, duration_s)``: blocking (the serving benchmark);
- ``LoadGenerator(url, ...).start()`` ... ``.stop()``: in a background thread while something else happens
  (a rolling update, a replica kill), or ``.run()`` until a budget ends.

It refuses targets that are not on loopback unless ``allow_remote=True``, so a test can never load someone
else's server. One percentile rule (``percentile``: linear interpolation between closest ranks, numpy's
default) for every number it reports.
"""

from __future__ import annotations

import asyncio
import re
import resource
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

MAX_REQUESTS = 100_000
MAX_SECONDS = 600.0
MAX_CLIENTS = 256
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_VERSION = re.compile(rb'"model_version"\s*:\s*"([^"]*)"')


def check_target(url: str, allow_remote: bool = False) -> None:
    """Refuse a load target that is not on loopback (unless deliberately allowed)."""
    if urlsplit(url).hostname not in LOOPBACK and not allow_remote:
        raise ValueError(f"load target {url} is not loopback; pass allow_remote=True deliberately")


def percentile(values, q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation (numpy's default); None when empty."""
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, 100 * q)) if arr.size else None


@dataclass
class LoadResult:
    clients: int = 0
    requests: int = 0  # attempts: replies of any status plus connection failures
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # every attempt
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> replies
    errors: Counter = field(default_factory=Counter)  # failure cause ("HTTP 503", "ConnectionRefusedError") -> n
    versions: Counter = field(default_factory=Counter)  # model_version of each 2xx reply ("?" if none) -> n
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (s since start, version) of each 2xx
    cpu_s: float = 0.0  # the generator's own CPU seconds

    @property
    def failed(self) -> int:
        """Non-2xx replies plus connection failures and timeouts."""
        return sum(self.errors.values())

    non_2xx = failed

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    def versions_after(self, t: float) -> set[str]:
        """Versions that answered requests started at or after ``t`` seconds."""
        return {v for ts, v in self.timeline if ts >= t}

    def version_spans(self) -> list[tuple[str, float, float, int]]:
        """The rollout as it was seen: consecutive runs of one version, (version, first s, last s, answers),
        in start order. A clean update is two spans; interleaving shows while both versions served."""
        spans: list[list] = []
        for ts, v in sorted(self.timeline):
            if spans and spans[-1][0] == v:
                spans[-1][2], spans[-1][3] = ts, spans[-1][3] + 1
            else:
                spans.append([v, ts, ts, 1])
        return [(v, round(a, 3), round(b, 3), n) for v, a, b, n in spans]

    def summary(self, predictions_per_request: int | None = None) -> dict:
        p50, p99 = self.percentile(0.5), self.percentile(0.99)
        out = {
            "clients": self.clients, "requests": self.requests, "failed": self.failed, "non_2xx": self.non_2xx,
            "status_503": self.statuses.get(503, 0), "statuses": dict(self.statuses), "errors": dict(self.errors),
            "versions": dict(self.versions), "seconds": round(self.seconds, 2),
            "p50_ms": None if p50 is None else round(p50, 2), "p99_ms": None if p99 is None else round(p99, 2),
            "req_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "loadgen_cpu_pct": round(100 * self.cpu_s / self.seconds, 1) if self.seconds else 0.0,
        }
        if predictions_per_request is not None:
            ok = self.requests - self.failed
            out["pred_per_s"] = round(ok * predictions_per_request / self.seconds, 1) if self.seconds else 0.0
        return out


def _request_bytes(method: str, host: str, port: int, path: str, body: bytes | None,
                   headers: dict[str, str] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
    for name, value in (headers or {}).items():  # e.g. Authorization: Bearer <key> (never logged)
        if "\r" in name + value or "\n" in name + value:
            raise ValueError(f"header {name!r} holds a line break")
        head += f"{name}: {value}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, keep-alive, body): a reply with ``Connection: close`` ends the connection, as in any client."""
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
    body = b""
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            parts.append((await reader.readexactly(size + 2))[:size])
            if size == 0:
                break
        body = b"".join(parts)
    elif length:
        body = await reader.readexactly(length)
    return status, keep_alive, body


class LoadGenerator:
    """Start with start(), stop with stop() (or let the budgets end it); stop() and run() return the result."""

    def __init__(self, url: str, concurrency: int = 4, max_requests: int = 20_000, max_seconds: float = 180.0,
                 method: str = "GET", body: bytes | None = None, timeout: float = 15.0,
                 allow_remote: bool = False, headers: dict[str, str] | None = None):
        check_target(url, allow_remote)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = _request_bytes(method, self.host, self.port, parts.path or "/", body, headers)
        self.timeout = timeout
        self.concurrency = max(1, min(concurrency, MAX_CLIENTS))
        self.max_requests = min(max_requests, MAX_REQUESTS)
        self.max_seconds = min(max_seconds, MAX_SECONDS)
        self.result = LoadResult(clients=self.concurrency)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._budget = self.max_requests

    # -- running ------------------------------------------------------------------------------------------
    def start(self) -> LoadGenerator:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run_loop, name="loadgen", daemon=True)
        self._thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def stop(self) -> LoadResult:
        self._stop.set()
        return self._join()

    def run(self) -> LoadResult:
        """Blocking: run until a budget is spent."""
        return self.start()._join()

    def _join(self) -> LoadResult:
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5 if self._stop.is_set() else None)
        return self.result

    def _run_loop(self) -> None:
        cpu0 = _cpu()
        asyncio.run(self._main())
        self.result.seconds = self.elapsed()
        self.result.cpu_s = _cpu() - cpu0

    async def _main(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.concurrency)))

    # -- one client ---------------------------------------------------------------------------------------
    def _take(self) -> bool:
        # one event loop thread: no lock needed
        if self._stop.is_set() or self._budget <= 0 or self.elapsed() > self.max_seconds:
            return False
        self._budget -= 1
        self.result.requests += 1
        return True

    def _record(self, t_start: float, status: int | None, body: bytes, cause: str | None) -> None:
        res = self.result
        res.latencies_ms.append((time.monotonic() - t_start) * 1000)
        if status is not None:
            res.statuses[status] += 1
        if cause is None and status is not None and 200 <= status < 300:
            found = _VERSION.search(body)
            version = found.group(1).decode("utf-8", "replace") if found else "?"
            res.versions[version] += 1
            res.timeline.append((t_start - self._t0, version))
        else:
            res.errors[cause or f"HTTP {status}"] += 1

    async def _client(self) -> None:
        reader = writer = None
        while self._take():
            t_start = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                            self.timeout)
                writer.write(self.request)
                status, keep_alive, body = await asyncio.wait_for(_read_response(reader), self.timeout)
                self._record(t_start, status, body, None)
                if not keep_alive:
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
                self._record(t_start, None, b"", type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()


def run_load(url: str, payload: bytes | None, clients: int, duration_s: float, max_requests: int = 100_000,
             timeout_s: float = 30.0, method: str = "POST", allow_remote: bool = False,
             headers: dict[str, str] | None = None) -> LoadResult:
    """``clients`` concurrent keep-alive connections for ``duration_s`` (bounded by ``max_requests``)."""
    return LoadGenerator(url, concurrency=clients, max_requests=max_requests, max_seconds=duration_s,
                         method=method, body=payload, timeout=timeout_s, allow_remote=allow_remote,
                         headers=headers).run()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
