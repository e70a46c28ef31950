"""Bounded loopback load generator: N threads with keep-alive connections send requests until a request
budget or a time budget is spent (both capped), recording failures and which model version answered.

Used by the zero-downtime tests and the deploy benchmark. It refuses non-loopback targets unless told
otherwise, so a test can never load someone else's server.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dkt_core.loopback import MAX_REQUESTS, MAX_SECONDS, check_target


@dataclass
class LoadResult:
    requests: int = 0
    failed: int = 0
    versions: Counter = field(default_factory=Counter)  # model_version -> answers
    errors: Counter = field(default_factory=Counter)  # "HTTP 502" / exception name -> count
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (t, version) of each success

    def percentile(self, q: float) -> float:
        lat = sorted(self.latencies_ms)
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0

    def versions_after(self, t: float) -> set[str]:
        return {v for ts, v in self.timeline if ts >= t}

    def summary(self) -> dict:
        return {"requests": self.requests, "failed": self.failed, "versions": dict(self.versions),
                "errors": dict(self.errors), "seconds": round(self.seconds, 2),
                "rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(self.percentile(0.5), 1), "p99_ms": round(self.percentile(0.99), 1)}


class LoadGenerator:
    """Start with start(), stop with stop() (or let the budgets end it); stop() returns the LoadResult."""

    def __init__(self, url: str, concurrency: int = 4, max_requests: int = 20_000, max_seconds: float = 180.0,
                 method: str = "GET", body: bytes | None = None, timeout: float = 15.0,
                 allow_remote: bool = False):
        check_target(url, allow_remote)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.method, self.body, self.timeout = method, body, timeout
        self.concurrency = max(1, min(concurrency, 64))
        self.max_requests = min(max_requests, MAX_REQUESTS)
        self.max_seconds = min(max_seconds, MAX_SECONDS)
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def start(self) -> LoadGenerator:
        self._t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.concurrency)]
        for t in self._threads:
            t.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)
        self.result.seconds = self.elapsed()
        return self.result

    def run(self) -> LoadResult:
        """Blocking: run until a budget is spent."""
        self.start()
        for t in self._threads:
            t.join()
        self.result.seconds = self.elapsed()
        return self.result

    def _take(self) -> bool:
        with self._lock:
            if self._stop.is_set() or self.result.requests >= self.max_requests or self.elapsed() > self.max_seconds:
                return False
            self.result.requests += 1
            return True

    def _record(self, t_start: float, version: str | None, error: str | None) -> None:
        with self._lock:
            if error is None:
                self.result.versions[version or "?"] += 1
                self.result.latencies_ms.append((time.monotonic() - t_start) * 1000)
                self.result.timeline.append((t_start - self._t0, version or "?"))
            else:
                self.result.failed += 1
                self.result.errors[error] += 1

    def _worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "application/json"} if self.body is not None else {}
        while self._take():
            t_start = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request(self.method, self.path, body=self.body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    self._record(t_start, None, f"HTTP {resp.status}")
                    continue
                version = None
                try:
                    version = json.loads(data).get("model_version")
                except (ValueError, AttributeError):
                    pass
                self._record(t_start, version, None)
            except (OSError, http.client.HTTPException) as exc:
                self._record(t_start, None, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
