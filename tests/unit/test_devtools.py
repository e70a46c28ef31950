"""Dev tools stay out of the runtime (issue 14 item 4): the wheel ships dkt_core only, nothing in dkt_core
imports devtools, and the one load generator's counting, version timeline and percentile rule."""

from __future__ import annotations

import ast
import json
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
from setuptools import find_packages

from devtools.loadgen import LoadGenerator, LoadResult, percentile, run_load
from tests.local_http import QuietHandler, serve

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_dkt_core_only():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = find_packages(where=str(ROOT), include=conf["include"], exclude=conf.get("exclude", ()))
    assert shipped and all(p == "dkt_core" or p.startswith("dkt_core.") for p in shipped), shipped
    left = {str(p.relative_to(ROOT)) for p in (ROOT / "dkt_core").rglob("*.py") if "loadgen" in p.name}
    assert left == PENDING_LOADGEN, "load generators live in devtools/"


# Still in dkt_core while the Swarm tests move to devtools.loadgen (issue 14); only shrinks.
PENDING_LOADGEN: set[str] = set()


def test_dkt_core_never_imports_devtools_or_tests():
    for path in (ROOT / "dkt_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("devtools", "tests", "bench")], path


def test_percentile_is_one_rule():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == pytest.approx(float(np.percentile(values, 99)))
    assert percentile([], 0.5) is None
    res = LoadResult(latencies_ms=values)
    assert res.percentile(0.5) == 3.0


def test_version_spans_read_a_rollout():
    res = LoadResult(timeline=[(0.0, "v1"), (0.5, "v1"), (1.0, "v2"), (1.2, "v1"), (2.0, "v2"), (3.0, "v2")])
    assert res.version_spans() == [("v1", 0.0, 0.5, 2), ("v2", 1.0, 1.0, 1), ("v1", 1.2, 1.2, 1),
                                   ("v2", 2.0, 3.0, 2)]
    assert res.versions_after(1.5) == {"v2"}


class _Versioned(QuietHandler):
    protocol_version = "HTTP/1.1"
    version = "v1"
    served = 0

    def _reply(self):
        type(self).served += 1
        body = json.dumps({"model_version": type(self).version}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self._reply()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply()


@pytest.fixture
def versioned():
    _Versioned.version, _Versioned.served = "v1", 0
    with serve(_Versioned) as url:
        yield url


def test_background_generator_sees_the_version_change(versioned):
    gen = LoadGenerator(f"{versioned}/version", concurrency=2, max_requests=10_000, max_seconds=60).start()
    # switch once the server has answered some requests (counted, not slept for)
    while _Versioned.served < 20:
        threading.Event().wait(0.01)
    _Versioned.version = "v2"
    switched_at = gen.elapsed()
    while _Versioned.served < 60:
        threading.Event().wait(0.01)
    res = gen.stop()
    assert res.failed == 0 and res.requests == sum(res.versions.values())
    assert set(res.versions) == {"v1", "v2"}
    assert res.version_spans()[0][0] == "v1" and res.version_spans()[-1][0] == "v2"
    assert res.versions_after(switched_at + 1e-3) <= {"v1", "v2"}
    assert "v2" in res.versions_after(switched_at)


def test_run_load_posts_and_summarises(versioned):
    res = run_load(f"{versioned}/predict", b"{}", clients=3, duration_s=30, max_requests=90)
    summary = res.summary(predictions_per_request=2)
    assert summary["requests"] == 90 and summary["non_2xx"] == 0 and summary["versions"] == {"v1": 90}
    assert summary["clients"] == 3 and summary["statuses"] == {200: 90}
    assert summary["p99_ms"] >= summary["p50_ms"] > 0 and summary["pred_per_s"] > 0


SERVICE_MARKERS = {"integration", "docker", "airflow", "browser", "realdata", "slow"}


def test_every_test_module_outside_unit_carries_a_service_marker():
    """`make unit` selects by marker (not by folder or file lists): a test that starts real services must say
    so, or it would run without them."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert SERVICE_MARKERS <= {m.split(":")[0] for m in conf}
    unmarked = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.parent.name == "unit":
            continue
        marks = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
                marks = {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute)} & SERVICE_MARKERS
        if not marks:
            unmarked.append(str(path.relative_to(ROOT)))
    assert not unmarked, f"add pytestmark = pytest.mark.<one of {sorted(SERVICE_MARKERS)}>: {unmarked}"
