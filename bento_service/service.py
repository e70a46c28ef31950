"""DKT inference service (BentoML 1.4): ``dkt-model:<version>`` from the model store, served over HTTP.

Routes (POST unless noted; JSON bodies are the pydantic models of ``dkt_core.api``):
  /predict            {"students": [StudentRequest, ...]} -> PredictResponse. The students of one request
                      go through the feature pipeline and the ensemble as one frame (request-level batching).
  /predict_batched    same body (the same limits: 1-256 students per request); adaptive batching across
                      concurrent requests (BentoML's dispatcher) -> [StudentPrediction + model_version, ...].
                      See docs/serving.md for when it helps.
Every limit of dkt_core.api (students, targets, history length, Timestamp range, targets after the history)
is enforced by the request models: a violation is HTTP 400 naming the value, logged as one line.
  /knowledge_state    {"userID", "history"} -> KnowledgeStateResponse (P per KnowledgeTag).
  /version            GET (and POST) -> VersionResponse of the loaded model.
  /livez /readyz /metrics  BentoML's; /readyz is 200 only once the model is loaded and warmed up.
  /  /docs.json       Swagger UI and the OpenAPI document (dkt_core.serving.openapi: the project's title,
                      version and every route's description, GET /version included, the Bearer key scheme).
Every route refuses a field it does not take (400 naming it).
Every route but /livez and /readyz needs ``Authorization: Bearer <key>`` (dkt_core.serving.auth): a missing,
malformed, unknown or revoked key is 401 with a JSON reason; /metrics counts requests per key name
and served model version (dkt_api_requests_total{key_name,route,status,model_version}). The docs are open. Keys: `make api-key NAME=...` (docs/security.md).

Settings (``ServingSettings`` of dkt_core/settings.py, loaded once at startup): DKT_MODEL_TAG (default:
dkt-model:latest), DKT_SERVE_WORKERS (1), DKT_BATCH_MAX_STUDENTS (256), DKT_BATCH_MAX_LATENCY_MS (10000),
DKT_HISTORY_WINDOW (400), DKT_KEEPALIVE_REQUESTS (25), DKT_TORCH_THREADS (1), DKT_API_AUTH (1),
DKT_API_KEYS_FILE ($DKT_HOME/secrets/api_keys.json; stack: /run/secrets/dkt_api_keys). Nothing is read from the
source tree: the model folder holds the whole artifact.
"""

from __future__ import annotations

import os

# One math thread per worker: request-sized work gains nothing from OpenMP and 2 cores are shared (set in
# the process environment before torch/lightgbm load OpenMP, which reads it from there).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import Annotated  # noqa: E402

import bentoml  # noqa: E402
from bentoml.exceptions import InvalidArgument, ServiceUnavailable  # noqa: E402
from bentoml.validators import ContentType  # noqa: E402
from pydantic import Field  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

with bentoml.importing():
    from dkt_core.api import (
        MAX_STUDENTS_PER_REQUEST,
        History,
        KnowledgeStateResponse,
        PredictResponse,
        StudentRequest,
        VersionResponse,
    )
    from dkt_core.serving import InferenceEngine, ModelLoader
    from dkt_core.serving.auth import ApiKeyAuth, load_keys
    from dkt_core.serving.batched import BatchedPrediction
    from dkt_core.serving.keepalive import MaxRequestsPerConnection
    from dkt_core.serving.one_write import install as one_write_replies
    from dkt_core.serving.openapi import OpenApiDocs, forbid_unknown_fields
    from dkt_core.serving.patches import patch_timeout_middleware, quiet_client_errors
    from dkt_core.settings import ServingSettings, load

patch_timeout_middleware()  # BentoML's request timer otherwise pins every request's context for 30 s
quiet_client_errors()  # a 4xx is one log line, not a traceback
# uvicorn writes a reply's head and body in separate syscalls; one write leaves no head-without-body reply
# to a proxy when a node dies between them (dkt_core/serving/one_write.py)
one_write_replies()

SETTINGS = load(ServingSettings)  # the edge: the one place the service reads the environment
MODEL_TAG = SETTINGS.model_tag or "dkt-model:latest"
WORKERS = SETTINGS.workers
BATCH_MAX_STUDENTS = SETTINGS.batch_max_students
# Not a wait target (the dispatcher sizes its wait from measured latency): the age at which a queued
# request is refused with 503. 20-50 ms shed load on 2 cores; 10 s sheds only under real overload.
BATCH_MAX_LATENCY_MS = SETTINGS.batch_max_latency_ms
# Requests per keep-alive connection before it is closed, so connections spread over the workers (0: no limit)
KEEPALIVE_REQUESTS = SETTINGS.keepalive_requests
# The API keys (hashes) accepted, read once at start-up from the key-hash file (in the stack a Docker secret,
# never the environment). No file and auth not explicitly off: the service refuses to start.
API_KEYS = load_keys(SETTINGS.api_auth, SETTINGS.api_keys_file)

_instance: DKTService | None = None  # for the GET /version route mounted below (same worker process)


def _model_version() -> str:
    """The served model's version ("" until the service instance exists): /metrics labels and the docs."""
    return _instance.model_version if _instance is not None else ""


async def _get_version(request):
    if request.query_params:
        return JSONResponse({"error": f"unknown query parameter(s) {sorted(request.query_params)}: "
                                      "GET /version takes none"}, status_code=400)
    if _instance is None or not _instance.loader.ready:
        failed = _instance is not None and _instance.loader.error
        return JSONResponse({"error": f"model failed to load: {failed}" if failed else
                             "model is still loading; retry when /readyz is 200"}, status_code=503)
    return JSONResponse(_instance.loader.engine.version().model_dump())


_version_app = Starlette(routes=[Route("/version", _get_version, methods=["GET"])])

Students = Annotated[list[StudentRequest], Field(min_length=1, max_length=MAX_STUDENTS_PER_REQUEST)]
NonEmptyHistory = Annotated[History, Field(min_length=1)]
# A fixed media type: without it BentoML derives it from the JSON schema of a list output on every reply
BatchedReply = Annotated[list[BatchedPrediction], ContentType("application/json")]
UserID = Annotated[str, Field(min_length=1, max_length=64)]


@bentoml.service(name="dkt_inference", workers=WORKERS, traffic={"timeout": 30})
@bentoml.asgi_app(_version_app, path="/")
class DKTService:
    # A class attribute, so `bentoml build` packs exactly this model into the Bento.
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        global _instance
        stored = self.model  # on an instance the BentoModel attribute is the resolved store Model
        meta, artifact = dict(stored.info.metadata), stored.path_of("artifact")
        self.model_version = str(meta.get("model_version") or stored.tag.version)
        self.loader = ModelLoader(lambda: InferenceEngine.from_artifact(
            artifact, meta, window=SETTINGS.history_window, torch_threads=SETTINGS.torch_threads)).start()
        _instance = self

    def __is_ready__(self) -> bool:
        return self.loader.ready

    def _engine(self) -> InferenceEngine:
        engine = self.loader.engine
        if engine is None:
            raise ServiceUnavailable(self.loader.error and f"model failed to load: {self.loader.error}"
                                     or "model is still loading; retry when /readyz is 200")
        return engine

    @bentoml.api(route="/predict")
    def predict(self, students: Students) -> PredictResponse:
        """P(correct) of each target item of each student (1-256 students, 1-64 targets each, history up to
        10,000 rows, the model reads its last DKT_HISTORY_WINDOW), given the student's answered history. All
        students of one request go through the model as one batch. 400 names any bad or unknown field."""
        return self._engine().predict(students)

    @bentoml.api(route="/predict_batched", batchable=True, max_batch_size=BATCH_MAX_STUDENTS,
                 max_latency_ms=BATCH_MAX_LATENCY_MS)
    def predict_batched(self, students: Students) -> BatchedReply:
        """Same body and limits as /predict; requests arriving together are batched by the server (adaptive
        batching). Replies one prediction per student, each with the model version."""
        engine = self._engine()
        version = engine.model_version
        return [BatchedPrediction(model_version=version, **p.model_dump())
                for p in engine.predict_students(students)]

    @bentoml.api(route="/knowledge_state")
    def knowledge_state(self, userID: UserID, history: NonEmptyHistory) -> KnowledgeStateResponse:
        """A student's mastery per KnowledgeTag of the history: P(correct) on a typical unseen item of the
        tag (`tags`), and per tag (`tag_states`) the attempts and correct answers in the history and whether
        the model saw the tag in training (`unseen_tags` lists those it never saw)."""
        try:
            return self._engine().knowledge_state(userID.strip(), history)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None

    @bentoml.api(route="/version")
    def version(self) -> VersionResponse:
        """The loaded model: its version, the data version it was trained on, when, and its members (GET
        /version answers the same)."""
        return self._engine().version()


forbid_unknown_fields(DKTService)  # a field a route does not take is a 400 naming it, on every route


class LoadFailureReply:
    """Once the model has failed to load, every API call answers 503 with the reason. BentoML replaces the
    message of every 5xx it renders with "An unexpected error has occurred", so the reason would otherwise
    reach only the server log; /livez, /readyz and /metrics stay BentoML's."""

    PASS = ("/livez", "/readyz", "/metrics")

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        error = _instance.loader.error if _instance is not None else None
        if error and scope["type"] == "http" and scope.get("path") not in self.PASS:
            await JSONResponse({"error": f"model failed to load: {error}"}, status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# The first added is the outermost: the keep-alive limit sees every reply (401s too); a caller without a
# valid key learns nothing past the 401 (not even a load failure).
if KEEPALIVE_REQUESTS > 0:
    DKTService.add_asgi_middleware(MaxRequestsPerConnection, max_requests=KEEPALIVE_REQUESTS)
DKTService.add_asgi_middleware(ApiKeyAuth, keys=API_KEYS, model_version=_model_version)
DKTService.add_asgi_middleware(OpenApiDocs, service=DKTService, model_version=_model_version)
DKTService.add_asgi_middleware(LoadFailureReply)
