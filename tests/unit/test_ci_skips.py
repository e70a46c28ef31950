"""Under CI=true a skip for a missing prerequisite fails the run; deliberate skips stay skips.

Each case runs a small suite in a fresh pytest process (pytester) wired to the real hooks of
tests/conftest.py, once with CI=true and once without.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONFTEST = """
from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401  (under test)
"""

SUITE = """
import pytest
from tests.conftest import MISSING, skip_missing

@pytest.fixture
def dockerd():
    skip_missing("dockerd is not reachable: run `make docker-up`")

def test_needs_dockerd(dockerd):
    pass

def test_needs_chromium():
    skip_missing("chromium is missing: run `make browser-deps`")

@pytest.mark.skipif(True, reason=MISSING + "nginx is absent")
def test_needs_nginx():
    pass

def test_deliberate_skip():
    pytest.skip("not meaningful on this platform")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False

def test_runs():
    pass
"""

MODULE_LEVEL = """
from tests.conftest import skip_missing

skip_missing("the real data set is absent", allow_module_level=True)

def test_on_real_data():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the inner process imports tests.conftest
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE, test_module_level=MODULE_LEVEL)
    return pytester


def test_ci_true_fails_missing_prerequisites_and_keeps_deliberate_skips(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    # a failed collection stops the session (as it would in CI); go on to see every other outcome too
    result = suite.runpytest_subprocess("-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors")
    assert result.ret != 0
    # dockerd (fixture: error at setup), chromium (in the test), nginx (skipif mark), the module-level skip
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, failed=1, errors=3)
    out = result.stdout.str()
    for what in ("dockerd is not reachable", "chromium is missing", "nginx is absent", "the real data set is absent"):
        assert f"missing prerequisite: {what}" in out, what
    assert "CI=true: a missing prerequisite fails the run" in out
    result.stdout.fnmatch_lines(["SKIPPED*not meaningful on this platform*"])


@pytest.mark.parametrize("ci", [None, "false"])
def test_without_ci_missing_prerequisites_are_skips(suite, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = suite.runpytest_subprocess("-rA", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    result.stdout.fnmatch_lines(["SKIPPED*missing prerequisite: dockerd is not reachable*"])
