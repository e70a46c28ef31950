"""The inference engine behind the service: predictions, knowledge state and version of ONE loaded model.

``ModelLoader`` loads it in a background thread so the HTTP server is up (``/livez``) while the model is
still loading and ``/readyz`` turns ready only once the engine exists and has answered a warm-up request.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dkt_core.api import (
    Interaction,
    KnowledgeStateResponse,
    PredictResponse,
    StudentPrediction,
    StudentRequest,
    TagState,
    Target,
    VersionResponse,
)
from dkt_core.packaging.store import artifact_models
from dkt_core.predict import Predictor
from dkt_core.serving.frames import HISTORY_WINDOW, build_frame

log = logging.getLogger(__name__)
SEED_ITEM = re.compile(r"^[A-Za-z]\d{9}$")


def _limit_torch_threads(threads: int) -> None:
    """One intra-op thread per serving worker by default (DKT_TORCH_THREADS): requests are small, and on
    few shared cores a second thread per request mostly adds contention (a 200-row LSTM history: 1.6 ms
    on one thread, 3.5-14.6 ms on two next to other work)."""
    import torch

    torch.set_num_threads(max(1, threads))


class InferenceEngine:
    def __init__(self, predictor: Predictor, metadata: dict, window: int = HISTORY_WINDOW):
        self.predictor = predictor
        self.metadata = metadata
        self.window = window
        # The tags the model saw in training: the tag encoder's vocabulary (any other tag maps to its
        # unknown class). Built once; /knowledge_state flags tags outside it.
        self.trained_tags = frozenset(predictor.artifact.pipeline.encoders["tag"].vocab)

    @classmethod
    def from_artifact(cls, artifact_dir: str | Path, metadata: dict | None = None,
                      window: int = HISTORY_WINDOW, torch_threads: int = 1) -> InferenceEngine:
        _limit_torch_threads(torch_threads)
        predictor = Predictor.load(artifact_dir)
        manifest = predictor.artifact.manifest
        meta = metadata or {"model_version": manifest["model_version"], "data_version": manifest["data_version"],
                            "trained_at": manifest["trained_at"], "models": artifact_models(manifest)}
        return cls(predictor, meta, window)

    @property
    def model_version(self) -> str:
        return self.predictor.model_version

    # -- predictions ---------------------------------------------------------------------------------
    def predict_students(self, students: Sequence[StudentRequest]) -> list[StudentPrediction]:
        """P(correct) per target for every student: one frame, one pass through pipeline + ensemble."""
        rf = build_frame(students, self.window)
        proba = self.predictor.predict_frame(rf.frame, rows=np.asarray(rf.target_rows))
        out, start = [], 0
        for student, n in zip(students, rf.target_counts, strict=True):
            out.append(StudentPrediction(userID=student.userID, probabilities=proba[start:start + n].tolist()))
            start += n
        return out

    def predict(self, students: Sequence[StudentRequest]) -> PredictResponse:
        return PredictResponse(model_version=self.model_version, results=self.predict_students(students))

    def knowledge_state(self, user_id: str, history: Sequence[Interaction]) -> KnowledgeStateResponse:
        """P(correct) per KnowledgeTag of the history on a *typical unseen item* of that tag.

        For each tag: one target appended at the end of the history (timestamp = the last interaction's),
        in the test of the student's latest item of that tag, with an item id the model has never seen
        (seed ids keep their head+mid prefix with tail 000, so grade/chapter features stay; the item itself
        maps to the unknown class and the population prior). Each tag is scored independently (its own
        copy of the history), so one tag's probe never counts as an attempt for another.

        Each tag also carries its attempts and correct answers in the whole history sent, and whether the
        model saw the tag in training (its tag encoder's vocabulary).
        """
        if not history:
            raise ValueError("history must hold at least one interaction")
        recent = sorted(history, key=lambda h: h["Timestamp"])[-self.window:]
        last_ts = max(h["Timestamp"] for h in recent)
        latest: dict[str, Interaction] = {}
        for h in recent:  # sorted by time: the last one wins
            latest[h["KnowledgeTag"].strip()] = h
        attempts: dict[str, list[int]] = {}
        for h in history:
            counts = attempts.setdefault(h["KnowledgeTag"].strip(), [0, 0])
            counts[0] += 1
            counts[1] += h["answerCode"]
        probes = []
        for tag, h in sorted(latest.items()):
            target = Target(assessmentItemID=typical_item(h["assessmentItemID"].strip()),
                            testId=h["testId"], KnowledgeTag=tag, Timestamp=last_ts)
            probes.append(StudentRequest.model_construct(userID=tag, history=recent, targets=[target]))
        results = self.predict_students(probes)
        mastery = {r.userID: r.probabilities[0] for r in results}
        states = [TagState(tag=tag, attempts=attempts[tag][0], correct=attempts[tag][1], mastery=p,
                           seen_in_training=tag in self.trained_tags) for tag, p in mastery.items()]
        return KnowledgeStateResponse(model_version=self.model_version, userID=user_id, tags=mastery,
                                      tag_states=states,
                                      unseen_tags=[s.tag for s in states if not s.seen_in_training])

    def version(self) -> VersionResponse:
        m = self.metadata
        return VersionResponse(model_version=m["model_version"], data_version=m["data_version"],
                               trained_at=m["trained_at"], models=artifact_models(m))


def typical_item(item: str) -> str:
    """An id the model never saw, in the same grade/chapter as ``item`` where the id encodes them."""
    return f"{item[:7]}000" if SEED_ITEM.match(item) else f"{item}#typical"


def warm_up(engine: InferenceEngine) -> float:
    """One small request through the whole path (first calls pay lazy imports/allocations); seconds."""
    start = time.perf_counter()
    row = {"assessmentItemID": "A000000001", "testId": "A000000000", "KnowledgeTag": "0",
           "Timestamp": "2020-01-01 00:00:00"}
    engine.predict([StudentRequest(userID="warmup", history=[Interaction(**row, answerCode=1)],
                                   targets=[Target(**row)])])
    return time.perf_counter() - start


def settle_gc() -> None:
    """Freeze everything alive after loading (libraries, model, encoders) into the permanent generation.

    A request allocates thousands of short-lived objects (a validated dict per interaction, frame and
    feature arrays); every full collection then walked the whole loaded heap again. Frozen, a 64-student request parses in
    29 ms instead of 65 ms. Objects created later are collected as usual.
    """
    gc.collect()
    gc.freeze()


class ModelLoader:
    """Builds the engine in a background thread; ``engine`` is None until it is loaded and warmed up."""

    def __init__(self, load: Callable[[], InferenceEngine]):
        self._load = load
        self.engine: InferenceEngine | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="dkt-model-loader", daemon=True)

    def start(self) -> ModelLoader:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.perf_counter()
        try:
            engine = self._load()
            warm = warm_up(engine)
            settle_gc()
            self.engine = engine
            log.info("model %s loaded in %.2fs (warm-up %.3fs)", engine.model_version,
                     time.perf_counter() - start, warm)
        except Exception as exc:  # reported by /readyz and every API call instead of a crash loop
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the model failed")

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.ready
