"""Driving the student web client through Flask's test client (unit tests): sign up, log in, answer.
The HTTP twin (a real gunicorn, ``requests``) is tests/webclient_http.py."""

from __future__ import annotations

import re

PASSWORD = "correct horse battery"


def csrf(client, url: str = "/login") -> str:
    """The session's CSRF token, read from the form on ``url``."""
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def sign_up(client, username: str, *, password: str = PASSWORD, role: str = "student", class_code: str = "",
            expect: int = 303) -> str:
    """Sign ``username`` up (the client is then logged in as it); returns the account's userID."""
    r = client.post("/signup", data={"csrf": csrf(client, "/signup"), "username": username, "password": password,
                                     "password2": password, "role": role, "class_code": class_code})
    assert r.status_code == expect, r.get_data(as_text=True)
    if expect != 303:
        return ""
    return user_id(client)


def user_id(client) -> str:
    """The userID of the logged-in account, as its start page shows it."""
    page = client.get("/").get_data(as_text=True)
    return re.search(r'id="user-id">([^<]+)<', page).group(1)


def log_in(client, username: str, password: str = PASSWORD, next_url: str = ""):
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"csrf": csrf(client), "username": username, "password": password})


def answer(client, item: str, choice: str, test: str = "T1", **extra):
    """Post one answer through the quiz form (``extra``: more form fields, e.g. a forged userID)."""
    return client.post(f"/quiz/{test}/answer",
                       data={"csrf": csrf(client, f"/quiz/{test}"), "item": item, "choice": choice, **extra})
