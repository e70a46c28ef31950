"""Roll the inference service to a new image with the Docker SDK, verify through the proxy, roll back.

Swarm does the health-gated start-first update (compose.yaml's update_config); this module decides
success: `UpdateStatus.State` must reach `completed` (`rollback_*`/`paused` = failure; the CLI's exit
code is 0 even after an automatic rollback, so it is never trusted), then the proxy must serve the new
model version. On any failure the service is put back on the previous image.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

FAILED_STATES = {"rollback_started", "rollback_paused", "rollback_completed", "paused"}


@dataclass
class RolloutResult:
    ok: bool
    service: str
    image: str
    previous_image: str
    state: str  # final UpdateStatus.State
    served_version: str | None
    seconds: float
    rolled_back: bool
    message: str
    states: list[str] = field(default_factory=list)  # state transitions seen

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def served_version(proxy_url: str, timeout: float = 3.0) -> str | None:
    """model_version from GET /version (POST {} if the service only accepts POST); None if unreachable."""
    for method, body in (("GET", None), ("POST", b"{}")):
        req = urllib.request.Request(f"{proxy_url}/version", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read()).get("model_version")
        except urllib.error.HTTPError as exc:
            if exc.code != 405:
                return None
        except (OSError, ValueError):
            return None
    return None


def smoke_test(proxy_url: str, expected: str, consecutive: int = 10, timeout_s: float = 30.0) -> str | None:
    """Wait until `consecutive` answers in a row report `expected`; return the last version seen."""
    deadline, streak, seen = time.monotonic() + timeout_s, 0, None
    while time.monotonic() < deadline:
        seen = served_version(proxy_url)
        streak = streak + 1 if seen == expected else 0
        if streak >= consecutive:
            return seen
        time.sleep(0.2)
    return seen


def _image_of(svc) -> str:
    return svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]


def _update_status(svc) -> tuple[str | None, str | None]:
    st = svc.attrs.get("UpdateStatus") or {}
    return st.get("State"), st.get("StartedAt")


def wait_update(svc, started_before: str | None, timeout_s: float, poll_s: float = 0.5) -> tuple[str, list[str]]:
    """Poll UpdateStatus of a new update (StartedAt differs from before) until it settles."""
    deadline, states = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        svc.reload()
        state, started = _update_status(svc)
        if state and started != started_before:
            if not states or states[-1] != state:
                states.append(state)
            if state == "completed" or state in {"rollback_completed", "rollback_paused", "paused"}:
                return state, states
        time.sleep(poll_s)
    return "timeout", states


def _update_image(svc, image: str) -> str | None:
    svc.reload()  # a stale version index makes the daemon answer "update out of sequence"
    before = _update_status(svc)[1]
    svc.update(image=image)
    return before


def rollout(client, service: str, image: str, expected_version: str, proxy_url: str,
            timeout_s: float = 300.0, smoke_timeout_s: float = 30.0) -> RolloutResult:
    """Update `service` to `image`; succeed only if Swarm completes and the proxy serves expected_version."""
    svc = client.services.get(service)
    previous = _image_of(svc)
    t0 = time.monotonic()
    before = _update_image(svc, image)
    state, states = wait_update(svc, before, timeout_s)
    seen = None
    if state == "completed":
        seen = smoke_test(proxy_url, expected_version, timeout_s=smoke_timeout_s)
        if seen == expected_version:
            return RolloutResult(True, service, image, previous, state, seen, time.monotonic() - t0, False,
                                 f"{service} now serves {expected_version}", states)
        why = f"smoke test failed: proxy serves {seen!r}, expected {expected_version!r}"
    elif state == "timeout":
        why = f"update did not settle within {timeout_s:.0f}s (states {states})"
    else:
        why = f"Swarm update ended in {state!r} (new tasks failed their healthcheck?)"

    rolled_back = state == "rollback_completed"
    if not rolled_back:
        # Put the previous image back ourselves (start-first, so still zero downtime).
        svc.reload()
        if _image_of(svc) != previous or state != "completed":
            before = _update_image(svc, previous)
            back, more = wait_update(svc, before, timeout_s)
            states += [f"manual-rollback:{s}" for s in more]
            rolled_back = back == "completed"
    seen = served_version(proxy_url)
    return RolloutResult(False, service, image, previous, state, seen, time.monotonic() - t0, rolled_back,
                         f"{why}; rolled back to {previous}" if rolled_back else f"{why}; ROLLBACK FAILED", states)
