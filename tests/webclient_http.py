"""Driving the student web client over plain HTTP (no browser), shared by the gunicorn and Swarm tests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import requests


def wait_healthy(http: requests.Session, url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``url``/healthz until it answers 200; fail when ``alive()`` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if http.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline and alive(), f"the web client at {url} never answered /healthz"
        time.sleep(0.2)


def answer_items(http: requests.Session, url: str, user: str, test_id: str, items: list[str], choice: str = "A") -> None:
    """Answer ``items`` of ``test_id`` as ``user`` through the quiz form (CSRF token from each page)."""
    for item in items:
        page = http.get(f"{url}/quiz/{user}/{test_id}", timeout=10).text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = http.post(f"{url}/quiz/{user}/{test_id}/answer", data={"csrf": token, "item": item, "choice": choice},
                      timeout=10, allow_redirects=False)
        assert r.status_code == 303, r.text
