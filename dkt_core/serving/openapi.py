"""The service's OpenAPI document and its strict request bodies (issue 13 item 6).

BentoML 1.4 builds the document at ``/docs.json`` (Swagger UI at ``/``) from the service: the title is the
service name, the version "None" outside a Bento, no security scheme, and routes mounted as an ASGI app
(our GET ``/version``) are missing. ``OpenApiDocs`` answers GET ``/docs.json`` itself with BentoML's document
plus the project's title, version and description, the Bearer scheme of the API keys (Swagger UI's
"Authorize" button) and GET ``/version``; every other request passes through untouched.

BentoML builds each route's input model from the method's signature and lets unknown top-level fields
through (pydantic's default); ``forbid_unknown_fields`` makes every route refuse them, as the nested rows
of ``dkt_core.api`` already do: a misspelt field is a 400 naming it, not silently ignored. The check is
pydantic's own (Rust), no Python per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dkt_core import __version__
from dkt_core.api import VersionResponse

TITLE = "DKT inference API (dkt-platform)"
DOCS_PATH = "/docs.json"
SCHEME = "apiKey"
DESCRIPTION = """Deep Knowledge Tracing predictions of the dkt-platform model served here: P(correct) of the
next items of a student (`/predict`, `/predict_batched`), a student's knowledge state per KnowledgeTag
(`/knowledge_state`) and the loaded model (`/version`).

**Authentication.** Every route but `/livez` and `/readyz` needs `Authorization: Bearer <key>`; a key is made
with `make api-key NAME=...`. In Swagger UI press *Authorize* and paste the key (without `Bearer`).

Unknown fields are refused (400 naming the field) on every route. Model served: `{model_version}`.
"""
OPEN_OPERATIONS = ("/livez", "/readyz", "/healthz")
VERSION_GET_DOC = "The loaded model: its version, the data version it was trained on, when, and its members."


def forbid_unknown_fields(service: Any) -> None:
    """Every route of a BentoML service refuses a body with a field its signature does not name."""
    for api in service.apis.values():
        spec = api.input_spec
        if spec.model_config.get("extra") != "forbid":
            spec.model_config["extra"] = "forbid"
            spec.model_rebuild(force=True)


def document(spec: dict, model_version: str) -> dict:
    """BentoML's OpenAPI document (``spec``, as a dict) with the project's info, the Bearer key scheme
    (required everywhere but the health checks) and the GET ``/version`` route."""
    spec = json.loads(json.dumps(spec))  # a private copy
    spec["info"] = {"title": TITLE, "version": __version__,
                    "description": DESCRIPTION.format(model_version=model_version or "(loading)")}
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["VersionResponse"] = VersionResponse.model_json_schema(
        ref_template="#/components/schemas/{model}")
    components["securitySchemes"] = {SCHEME: {
        "type": "http", "scheme": "bearer",
        "description": "An API key from `make api-key NAME=...` (sent as `Authorization: Bearer <key>`)."}}
    spec["security"] = [{SCHEME: []}]
    paths = spec.setdefault("paths", {})
    for path in OPEN_OPERATIONS:
        for op in paths.get(path, {}).values():
            if isinstance(op, dict):
                op["security"] = []
    version = paths.setdefault("/version", {})
    version["get"] = {
        "tags": ["Service APIs"], "operationId": "dkt_inference__version_get", "description": VERSION_GET_DOC,
        "responses": {"200": {"description": "Successful Response", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/VersionResponse"}}}},
            "503": {"description": "The model is still loading or failed to load (the reason is in `error`)"}}}
    return spec


class OpenApiDocs:
    """ASGI middleware: GET ``/docs.json`` answers ``document(service's spec)``; all else passes through."""

    def __init__(self, app, service: Any, model_version: Callable[[], str]) -> None:
        self.app = app
        self.service = service
        self.model_version = model_version

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") != DOCS_PATH or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        body = json.dumps(document(self.service.openapi_spec.asdict(), self.model_version())).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
