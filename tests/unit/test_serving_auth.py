"""The API key middleware in-process (dkt_core/serving/auth.py) on a small Starlette app with the service's
routes: 401 with a JSON reason and ``WWW-Authenticate: Bearer`` for a missing, malformed, unknown or revoked
key, 200 with a valid one, open health routes, per-key counts in /metrics (never the key), and auth off."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dkt_core.serving.apikeys import KeySet, create_key, revoke_key
from dkt_core.serving.auth import ApiKeyAuth, RequestCounter, load_keys


def _app(keys: KeySet | None, registry: CollectorRegistry, model_version: str = "v1") -> TestClient:
    async def ok(request):
        return JSONResponse({"ok": True})

    async def boom(request):
        return JSONResponse({"error": "bad"}, status_code=400)

    async def metrics(request):
        return PlainTextResponse(generate_latest(registry).decode())

    routes = [Route(p, ok, methods=["GET", "POST"]) for p in ("/predict", "/predict_batched", "/knowledge_state",
                                                              "/version", "/livez", "/readyz", "/docs",
                                                              "/", "/docs.json", "/static_content/x.js")]
    app = Starlette(routes=[*routes, Route("/bad", boom, methods=["POST"]), Route("/metrics", metrics)])
    return TestClient(ApiKeyAuth(app, keys, RequestCounter(registry), model_version=lambda: model_version))


@pytest.fixture
def keyed(tmp_path):
    store = tmp_path / "api_keys.json"
    good, old = create_key(store, "webclient"), create_key(store, "old")
    revoke_key(store, "old")
    registry = CollectorRegistry()
    return _app(KeySet.load(store), registry), good, old, registry


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("path", ["/predict", "/predict_batched", "/knowledge_state", "/version", "/metrics",
                                  "/docs", "/no-such-route"])
def test_every_route_but_health_needs_a_key(keyed, path):
    client, good, _, _ = keyed
    r = client.post(path, json={}) if path.startswith(("/predict", "/knowledge")) else client.get(path)
    assert r.status_code == 401
    assert r.json() == {"error": "missing API key: send the header 'Authorization: Bearer <key>'"}
    assert r.headers["www-authenticate"].startswith("Bearer")
    ok = client.post(path, json={}, headers=_auth(good)) if path.startswith(("/predict", "/knowledge")) \
        else client.get(path, headers=_auth(good))
    assert ok.status_code == (404 if path == "/no-such-route" else 200), ok.text


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Authorization": "Basic dXNlcjpwdw=="}, "malformed Authorization header: expected 'Bearer <key>'"),
    ({"Authorization": "Bearer"}, "malformed Authorization header: expected 'Bearer <key>'"),
    ({"Authorization": "Bearer " + "x" * 300}, "malformed API key"),
    ({"Authorization": "Bearer dkt_not-a-key"}, "unknown API key"),
])
def test_malformed_and_unknown_keys_get_401_with_the_reason(keyed, headers, reason):
    client, *_ = keyed
    r = client.post("/predict", json={}, headers=headers)
    assert (r.status_code, r.json()) == (401, {"error": reason})
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_revoked_key_gets_401_and_a_valid_one_200(keyed):
    client, good, old, _ = keyed
    r = client.post("/predict", json={}, headers=_auth(old))
    assert r.status_code == 401 and r.json()["error"].startswith("API key revoked at ")
    assert client.post("/predict", json={}, headers={"authorization": f"bearer {good}"}).status_code == 200


def test_health_routes_stay_open(keyed):
    client, *_ = keyed
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_requests_are_counted_per_key_name_never_by_key(keyed):
    client, good, old, registry = keyed
    for _ in range(3):
        client.post("/predict", json={}, headers=_auth(good))
    client.post("/bad", json={}, headers=_auth(good))
    client.post("/predict", json={}, headers=_auth(old))
    client.post("/predict", json={}, headers=_auth("dkt_guess"))
    client.post("/predict", json={})
    client.get("/livez")
    text = client.get("/metrics", headers=_auth(good)).text
    assert good not in text and old not in text and "dkt_guess" not in text

    def count(**labels) -> float | None:  # every count carries the served model's version (issue 13 item 6)
        return registry.get_sample_value("dkt_api_requests_total", {**labels, "model_version": "v1"})

    assert count(key_name="webclient", route="/predict", status="200") == 3
    assert count(key_name="webclient", route="other", status="400") == 1
    assert count(key_name="old", route="/predict", status="401") == 1
    assert count(key_name="(unknown)", route="/predict", status="401") == 1
    assert count(key_name="(none)", route="/predict", status="401") == 1
    assert count(key_name="webclient", route="/livez", status="200") is None  # health checks are not counted


def test_auth_off_lets_everything_through_and_still_counts(tmp_path):
    registry = CollectorRegistry()
    client = _app(load_keys(False, tmp_path / "absent.json"), registry)
    assert client.post("/predict", json={}).status_code == 200
    assert registry.get_sample_value("dkt_api_requests_total",
                                     {"key_name": "(auth off)", "route": "/predict", "status": "200",
                                      "model_version": "v1"}) == 1
    before_load = CollectorRegistry()
    loading = _app(None, before_load, model_version="")
    assert loading.post("/predict", json={}).status_code == 200
    assert before_load.get_sample_value("dkt_api_requests_total", {"key_name": "(auth off)", "route": "/predict",
                                                                "status": "200", "model_version": "(loading)"}) == 1


def test_the_api_documentation_is_open_for_get_only(keyed):
    """Swagger UI (/), its document and its files load without a key (a browser cannot send one); a POST
    there, or a path escaping the files' folder, still needs a key."""
    client, *_ = keyed
    for path in ("/", "/docs.json", "/static_content/x.js"):
        assert client.get(path).status_code == 200, path
    assert client.post("/docs.json", json={}).status_code == 401
    assert client.get("/static_content/../predict").status_code == 401


def test_auth_on_without_a_key_file_refuses_to_start(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_keys(True, tmp_path / "absent.json")
