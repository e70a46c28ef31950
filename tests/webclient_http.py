"""Driving the student web client over plain HTTP (no browser), shared by the gunicorn and Swarm tests.

Every quiz request needs a logged-in account (issue 12): ``sign_up``/``log_in`` put its session cookie
into the ``requests.Session``; ``answer_items`` signs up (or logs in) the given username first."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import requests

PASSWORD = "correct horse battery"  # test accounts' password (>= 8 characters)


def csrf_of(page: str) -> str:
    """The CSRF token of the session, from any page with a form."""
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


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


def current_user_id(http: requests.Session, url: str) -> str | None:
    """The userID the client records for this session's account (from the start page), None if logged out."""
    r = http.get(f"{url}/", timeout=10, allow_redirects=False)
    if r.status_code != 200:
        return None
    return re.search(r'id="user-id">([^<]+)<', r.text).group(1)


def sign_up(http: requests.Session, url: str, username: str, *, password: str = PASSWORD, role: str = "student",
            class_code: str = "") -> str:
    """Create the account (its session stays logged in); returns its userID."""
    token = csrf_of(http.get(f"{url}/signup", timeout=10).text)
    r = http.post(f"{url}/signup", data={"csrf": token, "username": username, "password": password,
                                         "password2": password, "role": role, "class_code": class_code},
                  timeout=30, allow_redirects=False)
    assert r.status_code == 303, r.text
    user_id = current_user_id(http, url)
    assert user_id, "signed up but not logged in"
    return user_id


def log_in(http: requests.Session, url: str, username: str, *, password: str = PASSWORD) -> str:
    token = csrf_of(http.get(f"{url}/login", timeout=10).text)
    r = http.post(f"{url}/login", data={"csrf": token, "username": username, "password": password},
                  timeout=30, allow_redirects=False)
    assert r.status_code == 303, r.text
    user_id = current_user_id(http, url)
    assert user_id, "logged in but the start page is not shown"
    return user_id


def ensure_account(http: requests.Session, url: str, username: str) -> str:
    """Log this session in as ``username`` (signing the account up the first time); returns its userID."""
    page = http.get(f"{url}/", timeout=10, allow_redirects=False)
    if page.status_code == 200 and f'id="who">{username}<' in page.text:
        return re.search(r'id="user-id">([^<]+)<', page.text).group(1)
    token = csrf_of(http.get(f"{url}/signup", timeout=10).text)
    r = http.post(f"{url}/signup", data={"csrf": token, "username": username, "password": PASSWORD,
                                         "password2": PASSWORD, "role": "student"}, timeout=30, allow_redirects=False)
    if r.status_code != 303 and "is taken" in r.text:
        return log_in(http, url, username)
    assert r.status_code == 303, r.text
    return current_user_id(http, url)


def answer_items(http: requests.Session, url: str, user: str, test_id: str, items: list[str], choice: str = "A") -> str:
    """Answer ``items`` of ``test_id`` as the account ``user`` (a username: signed up or logged in first)
    through the quiz form (CSRF token from each page). Returns the account's userID, which the rows carry."""
    user_id = ensure_account(http, url, user)
    for item in items:
        page = http.get(f"{url}/quiz/{test_id}", timeout=10).text
        r = http.post(f"{url}/quiz/{test_id}/answer", data={"csrf": csrf_of(page), "item": item, "choice": choice},
                      timeout=10, allow_redirects=False)
        assert r.status_code == 303, r.text
    return user_id
