"""Response item of the adaptive-batching endpoint: one student's result (batched endpoints return one
item per input item, so the model version travels with each)."""

from __future__ import annotations

from dkt_core.api import StudentPrediction


class BatchedPrediction(StudentPrediction):
    model_version: str
