"""HTTP client of the inference service (``POST /predict``, ``POST /knowledge_state``).

Requests and replies go through the pydantic models of ``dkt_core.api``. Every failure (down, slow, 4xx/5xx,
malformed reply) returns ``None`` with a reason, so the quiz keeps working and says predictions are
unavailable. After a failure the client stays quiet for ``cooldown_s`` instead of making every page wait
for the timeout again.

The client sends its own API key (``Authorization: Bearer``), read from a file (``DKT_CLIENT_API_KEY_FILE``;
in the stack the Docker secret /run/secrets/dkt_client_api_key; ``read_api_key``), never from the
environment. A 401 is logged with the service's reason, like any failure.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from pydantic import ValidationError

from dkt_core.api import (
    Interaction,
    KnowledgeStateRequest,
    KnowledgeStateResponse,
    PredictRequest,
    PredictResponse,
    StudentRequest,
    Target,
)

log = logging.getLogger(__name__)


def _interactions(history: list[dict]) -> list[Interaction]:
    # History rows are seed-format dicts; the API's Interaction has no userID (it sits on the student), and
    # the client's own columns (the chosen letter) are not part of it.
    keys = set(Interaction.__annotations__)
    return [Interaction(**{k: v for k, v in h.items() if k in keys}) for h in history]


@dataclass
class Outcome:
    value: object | None
    model_version: str | None = None
    error: str | None = None


def read_api_key(path: Path | None) -> str | None:
    """The client's API key from ``path`` (stripped); None, with a warning, when there is no such file: the
    quiz still works, and the service answers 401 until a key is provided (`make api-key NAME=webclient`)."""
    if path is None or not Path(path).is_file():
        log.warning("no API key file at %s: predictions will be refused (401); create one with "
                    "`make api-key NAME=webclient` and point DKT_CLIENT_API_KEY_FILE at it", path)
        return None
    key = Path(path).read_text().strip()
    if not key:
        log.warning("the API key file %s is empty: predictions will be refused (401)", path)
        return None
    return key


class InferenceClient:
    def __init__(self, base_url: str, *, timeout_s: float = 2.0, cooldown_s: float = 10.0,
                 api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._session = requests.Session()
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    def _post(self, path: str, payload: dict) -> tuple[dict | None, str | None]:
        with self._lock:
            if time.monotonic() < self._down_until:
                return None, "inference service recently failed; retrying shortly"
        try:
            r = self._session.post(f"{self.base_url}{path}", json=payload, timeout=self.timeout_s)
            if r.status_code != 200:
                raise requests.HTTPError(f"HTTP {r.status_code}: {r.text[:200]}")
            return r.json(), None
        except (requests.RequestException, ValueError) as e:
            with self._lock:
                self._down_until = time.monotonic() + self.cooldown_s
            log.warning("inference %s%s failed: %s", self.base_url, path, e)
            return None, f"{type(e).__name__}: {e}"

    def predict_next(self, user: str, history: list[dict], target: dict) -> Outcome:
        """P(correct) of ``user`` on ``target`` (item, test, tag, timestamp) given ``history``."""
        req = PredictRequest(students=[StudentRequest(
            userID=user, history=_interactions(history), targets=[Target(**target)],
        )])
        body, err = self._post("/predict", req.model_dump())
        if body is None:
            return Outcome(None, error=err)
        try:
            resp = PredictResponse.model_validate(body)
            return Outcome(float(resp.results[0].probabilities[0]), resp.model_version)
        except (ValidationError, IndexError) as e:
            return Outcome(None, error=f"malformed /predict reply: {e}")

    def predict_many(self, user: str, history: list[dict], targets: list[dict]) -> Outcome:
        """P(correct) of ``user`` on each of ``targets`` (at most MAX_TARGETS_PER_STUDENT) in ONE call;
        the value is the list of probabilities in target order."""
        if not targets:
            return Outcome([], None)
        req = PredictRequest(students=[StudentRequest(
            userID=user, history=_interactions(history), targets=[Target(**t) for t in targets],
        )])
        body, err = self._post("/predict", req.model_dump())
        if body is None:
            return Outcome(None, error=err)
        try:
            resp = PredictResponse.model_validate(body)
            probs = [float(p) for p in resp.results[0].probabilities]
            if len(probs) != len(targets):
                raise IndexError(f"{len(probs)} probabilities for {len(targets)} targets")
            return Outcome(probs, resp.model_version)
        except (ValidationError, IndexError) as e:
            return Outcome(None, error=f"malformed /predict reply: {e}")

    def knowledge_state(self, user: str, history: list[dict]) -> Outcome:
        """P(correct) per KnowledgeTag for ``user``; needs at least one interaction."""
        if not history:
            return Outcome(None, error="no answers yet")
        req = KnowledgeStateRequest(userID=user, history=_interactions(history))
        body, err = self._post("/knowledge_state", req.model_dump())
        if body is None:
            return Outcome(None, error=err)
        try:
            resp = KnowledgeStateResponse.model_validate(body)
            return Outcome(dict(resp.tags), resp.model_version)
        except ValidationError as e:
            return Outcome(None, error=f"malformed /knowledge_state reply: {e}")
