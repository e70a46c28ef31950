"""Roll the inference service to a new image with the Docker SDK, verify through the proxy, roll back.

Swarm does the health-gated start-first update (compose.yaml's update_config); this module decides
success: `UpdateStatus.State` must reach `completed` (`rollback_*`/`paused` = failure; the CLI's exit
code is 0 even after an automatic rollback, so it is never trusted), then the smoke test must pass
through the proxy: `/version` reports the new model version and `POST /predict` answers a probe. On any
failure the service is put back on the previous image. The smoke test sends the deployer's own API key
(``api_key``, the key named ``smoke``: dkt_core.deploy.apikeys).

Asking for the image that already runs starts no Swarm update (the spec is unchanged, so no
`UpdateStatus` would ever come): that case is recognised first and answered at once.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

FAILED_STATES = {"rollback_started", "rollback_paused", "rollback_completed", "paused"}
UNCHANGED = "unchanged"  # RolloutResult.state when the service already ran the asked image
# A request every DKT model can answer (unknown ids are "unseen", an empty history is a cold start): the
# smoke test's proof that the new replicas predict, not only that they report a version.
PREDICT_PROBE = {"students": [{"userID": "dkt-smoke-test", "history": [], "targets": [
    {"assessmentItemID": "A000000001", "testId": "A000000000", "KnowledgeTag": "0",
     "Timestamp": "2020-01-01 00:00:00"}]}]}


@dataclass
class RolloutResult:
    ok: bool
    service: str
    image: str
    previous_image: str
    state: str  # final UpdateStatus.State, or UNCHANGED
    served_version: str | None
    seconds: float
    rolled_back: bool
    message: str
    states: list[str] = field(default_factory=list)  # state transitions seen

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class SmokeResult:
    ok: bool
    served_version: str | None  # the last version /version reported
    problem: str | None  # why it failed (None when ok)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}


def served_version(proxy_url: str, timeout: float = 3.0, api_key: str | None = None) -> str | None:
    """model_version from GET /version (POST {} if the service only accepts POST); None if unreachable."""
    for method, body in (("GET", None), ("POST", b"{}")):
        req = urllib.request.Request(f"{proxy_url}/version", data=body, method=method, headers=_headers(api_key))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read()).get("model_version")
        except urllib.error.HTTPError as exc:
            if exc.code != 405:
                return None
        except (OSError, ValueError):
            return None
    return None


def predict_problem(proxy_url: str, expected: str, timeout: float = 10.0, api_key: str | None = None) -> str | None:
    """POST the probe to /predict; None when it answers 200 from `expected` with one probability in [0, 1]."""
    req = urllib.request.Request(f"{proxy_url}/predict", data=json.dumps(PREDICT_PROBE).encode(), method="POST",
                                 headers=_headers(api_key))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return f"POST /predict answered HTTP {exc.code}: {exc.read()[:200]!r}"
    except (OSError, ValueError) as exc:
        return f"POST /predict failed: {type(exc).__name__}: {exc}"
    try:
        probs = [p for r in body["results"] for p in r["probabilities"]]
        version = body["model_version"]
    except (KeyError, TypeError):
        return f"POST /predict answered an unexpected body: {str(body)[:200]}"
    if version != expected:
        return f"POST /predict answered from model {version!r}, expected {expected!r}"
    if len(probs) != 1 or not all(isinstance(p, (int, float)) and math.isfinite(p) and 0 <= p <= 1 for p in probs):
        return f"POST /predict answered probabilities {probs!r}, expected one in [0, 1]"
    return None


def smoke_test(proxy_url: str, expected: str, consecutive: int = 10, timeout_s: float = 30.0,
               predict_probes: int = 4, api_key: str | None = None) -> SmokeResult:
    """Wait until `consecutive` /version answers in a row report `expected`, then `predict_probes`
    /predict probes in a row must succeed (the proxy spreads them over the replicas)."""
    deadline, streak, seen = time.monotonic() + timeout_s, 0, None
    while time.monotonic() < deadline and streak < consecutive:
        seen = served_version(proxy_url, api_key=api_key)
        streak = streak + 1 if seen == expected else 0
        if streak < consecutive:
            time.sleep(0.2)
    if streak < consecutive:
        return SmokeResult(False, seen, f"proxy serves {seen!r}, expected {expected!r} "
                                        f"({consecutive} answers in a row within {timeout_s:.0f}s)")
    for _ in range(predict_probes):
        problem = predict_problem(proxy_url, expected, api_key=api_key)
        if problem:
            return SmokeResult(False, seen, problem)
    return SmokeResult(True, seen, None)


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


def pinned(image: str, digest: str | None) -> str:
    """`image@digest` when the registry digest is known: Swarm then runs exactly what was pushed."""
    return f"{image.split('@')[0]}@{digest}" if digest else image


def already_running(running: str, image: str, digest: str | None = None) -> bool:
    """Whether the service's spec already names this image. With a digest: the same name and digest;
    without one, the same name (tags are immutable, and an identical spec would start no update)."""
    if running == pinned(image, digest):
        return True
    name, _, running_digest = running.partition("@")
    if name != image.split("@")[0]:
        return False
    return running_digest == digest if digest else True


def rollout(client, service: str, image: str, expected_version: str, proxy_url: str,
            timeout_s: float = 300.0, smoke_timeout_s: float = 30.0, digest: str | None = None,
            rollback_timeout_s: float = 300.0, api_key: str | None = None) -> RolloutResult:
    """Update `service` to `image` (pinned to `digest` when given); succeed only if Swarm completes and
    the smoke test passes through the proxy. If the service already runs that image, return at once
    (ok when the proxy serves `expected_version`)."""
    svc = client.services.get(service)
    previous = _image_of(svc)
    t0 = time.monotonic()
    if already_running(previous, image, digest):
        smoke = smoke_test(proxy_url, expected_version, consecutive=3, timeout_s=min(smoke_timeout_s, 10.0),
                           predict_probes=1, api_key=api_key)
        msg = (f"{service} already runs {previous} and serves {expected_version}: nothing to update" if smoke.ok
               else f"{service} already runs {previous} but the smoke test failed: {smoke.problem}")
        return RolloutResult(smoke.ok, service, image, previous, UNCHANGED, smoke.served_version,
                             time.monotonic() - t0, False, msg, [UNCHANGED])
    before = _update_image(svc, pinned(image, digest))
    state, states = wait_update(svc, before, timeout_s)
    if state == "completed":
        smoke = smoke_test(proxy_url, expected_version, timeout_s=smoke_timeout_s, api_key=api_key)
        if smoke.ok:
            return RolloutResult(True, service, image, previous, state, smoke.served_version,
                                 time.monotonic() - t0, False, f"{service} now serves {expected_version}", states)
        why = f"smoke test failed: {smoke.problem}"
    elif state == "timeout":
        why = f"update did not settle within {timeout_s:.0f}s (states {states})"
    else:
        why = f"Swarm update ended in {state!r} (new tasks failed their healthcheck?)"

    rolled_back = state == "rollback_completed"
    if not rolled_back:
        # Put the previous image back ourselves (start-first, so still zero downtime). A timed-out update
        # may still be running: a new spec supersedes it.
        svc.reload()
        if _image_of(svc) != previous or state != "completed":
            before = _update_image(svc, previous)
            back, more = wait_update(svc, before, rollback_timeout_s)
            states += [f"manual-rollback:{s}" for s in more]
            rolled_back = back == "completed"
    seen = served_version(proxy_url, api_key=api_key)
    return RolloutResult(False, service, image, previous, state, seen, time.monotonic() - t0, rolled_back,
                         f"{why}; rolled back to {previous}" if rolled_back else f"{why}; ROLLBACK FAILED", states)
