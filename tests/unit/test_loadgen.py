"""The load generator against a real loopback HTTP server: counts, versions, failures, budgets."""

import json

import pytest

from devtools.loadgen import LoadGenerator
from tests.local_http import QuietHandler, serve


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    counter = 0

    def do_GET(self):  # noqa: N802
        type(self).counter += 1
        fail = self.path == "/flaky" and type(self).counter % 10 == 0
        body = json.dumps({"model_version": "v9"}).encode()
        self.send_response(503 if fail else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    with serve(_Handler) as url:
        yield url


def test_request_budget_and_versions(server):
    res = LoadGenerator(f"{server}/version", concurrency=3, max_requests=200, max_seconds=20).run()
    assert res.requests == 200 and res.failed == 0
    assert res.versions == {"v9": 200}
    assert res.versions_after(0.0) == {"v9"}
    assert res.summary()["p99_ms"] >= res.summary()["p50_ms"] > 0


def test_failures_are_counted(server):
    res = LoadGenerator(f"{server}/flaky", concurrency=1, max_requests=100, max_seconds=20).run()
    assert res.failed == 10 and res.errors == {"HTTP 503": 10}


def test_connection_refused_is_a_failure_not_a_crash():
    res = LoadGenerator("http://127.0.0.1:1/x", concurrency=2, max_requests=10, max_seconds=5).run()
    assert res.failed == 10 and res.requests == 10


def test_refuses_remote_targets():
    with pytest.raises(ValueError, match="loopback"):
        LoadGenerator("http://example.com/version")
