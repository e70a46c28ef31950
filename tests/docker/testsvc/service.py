"""TEST FIXTURE, not the product: a tiny BentoML service with the inference service's operational
contract (/livez, /readyz, /metrics from BentoML; /version from the packed model's metadata), used to
test image builds and Swarm rollouts without torch. The real service is bento_service/service.py.

Like the real one it loads `dkt-model:<version>` (env DKT_MODEL_TAG) from the BentoML model store baked
into the image, so the model-layer mechanics are exercised too. DKT_TESTSVC_NEVER_READY=1 makes /readyz
fail forever: that is the "broken image" of the rollback test. /predict answers every target with 0.5 in
the real service's response shape (what the rollout's smoke test probes); DKT_TESTSVC_PREDICT_FAILS=1
makes it answer 500: the "healthy but cannot predict" image of the smoke-test-failure test.
"""

from __future__ import annotations

import os
import time

import bentoml

try:  # the image carries the real service's one_write.py next to this file (TEST_SERVICE.modules)
    from one_write import install as one_write_replies
except ImportError:  # imported from the repository
    from dkt_core.serving.one_write import install as one_write_replies

MODEL_TAG = os.environ.get("DKT_MODEL_TAG", "dkt-model:latest")
READY_DELAY_S = float(os.environ.get("DKT_TESTSVC_READY_DELAY_S", "1"))
one_write_replies()  # like the real service: a reply's head and body in one socket write


@bentoml.service(workers=1, traffic={"timeout": 10})
class VersionService:
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.meta = dict(self.model.info.metadata)  # class-level BentoModel resolves to a Model

    def __is_ready__(self) -> bool:
        if os.environ.get("DKT_TESTSVC_NEVER_READY") == "1":
            return False
        return time.monotonic() - self.started >= READY_DELAY_S

    @bentoml.api(route="/predict")
    def predict(self, students: list[dict]) -> dict:
        if os.environ.get("DKT_TESTSVC_PREDICT_FAILS") == "1":
            raise RuntimeError("DKT_TESTSVC_PREDICT_FAILS=1: this fixture image cannot predict")
        return {"model_version": self.meta["model_version"],
                "results": [{"userID": s.get("userID", ""), "probabilities": [0.5] * len(s.get("targets", []))}
                            for s in students]}

    @bentoml.api(route="/version")
    def version(self) -> dict:
        return {
            "model_version": self.meta["model_version"],
            "data_version": self.meta.get("data_version", ""),
            "trained_at": self.meta.get("trained_at", ""),
            "models": list(self.meta.get("models", [])),
        }
