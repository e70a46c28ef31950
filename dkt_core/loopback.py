"""The loopback guard and caps shared by the load generators (``dkt_core.serving.loadgen`` and
``dkt_core.deploy.loadgen``): a load test may only target loopback unless deliberately allowed, and one
run is bounded in requests and seconds. A low-level helper (no dkt_core imports), so neither generator
imports the other's layer.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_REQUESTS = 100_000
MAX_SECONDS = 600.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_target(url: str, allow_remote: bool = False) -> None:
    """Refuse a load target that is not on loopback (unless deliberately allowed)."""
    if urlsplit(url).hostname not in LOOPBACK and not allow_remote:
        raise ValueError(f"load target {url} is not loopback; pass allow_remote=True deliberately")
