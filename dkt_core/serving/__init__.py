"""Serving helpers used by bento_service/: request -> typed interaction frame (the seed format, typed the
way validation types a file), predictions through ``dkt_core.predict.Predictor``, knowledge state per tag,
model loading and readiness. Framework-free, so it is unit-tested without BentoML."""

from dkt_core.serving.engine import InferenceEngine, ModelLoader
from dkt_core.serving.frames import HISTORY_WINDOW, build_frame

__all__ = ["HISTORY_WINDOW", "InferenceEngine", "ModelLoader", "build_frame"]
