"""Weighted soft vote of the members' probabilities, with weights *fit* on validation predictions.

Weights are non-negative and sum to 1; they minimise the validation log-loss of the blended probability
(smooth, so scipy's SLSQP finds it reliably; AUC itself is a step function). The seed team typed their
8 : 1 : 0.5 : 0.5 weights by hand — here they are fit, stored as JSON with each member's validation
metrics, and reproducible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from dkt_core.evaluation.metrics import binary_metrics, clip_proba


@dataclass
class SoftVoteEnsemble:
    weights: dict[str, float] = field(default_factory=dict)
    member_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # validation, per member
    metrics: dict[str, float] = field(default_factory=dict)  # validation, of the blend
    n_valid: int = 0

    @property
    def members(self) -> list[str]:
        return list(self.weights)

    @classmethod
    def fit(cls, predictions: dict[str, np.ndarray], y: np.ndarray) -> SoftVoteEnsemble:
        """Fit weights on validation ``predictions`` (member -> P(correct) per row) and labels ``y``."""
        if not predictions:
            raise ValueError("the ensemble needs at least one member's validation predictions")
        y = np.asarray(y, dtype=np.float64)
        names = list(predictions)
        P = np.column_stack([np.asarray(predictions[n], dtype=np.float64) for n in names])
        if P.shape[0] != len(y):
            raise ValueError(f"{P.shape[0]} predictions per member but {len(y)} labels")
        if not np.isfinite(P).all():
            bad = [n for n in names if not np.isfinite(predictions[n]).all()]
            raise ValueError(f"member(s) {bad} produced NaN/inf validation predictions; fix them before blending")
        k = len(names)

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            p = clip_proba(P @ w)
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            grad = P.T @ ((p - y) / (p * (1 - p))) / len(y)
            return float(loss), grad

        if k == 1:
            w = np.ones(1)
        else:
            res = minimize(objective, np.full(k, 1 / k), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * k,
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}],
                           options={"maxiter": 200, "ftol": 1e-10})
            w = np.clip(res.x, 0.0, None)
            w = w / w.sum() if w.sum() > 0 else np.full(k, 1 / k)
        ens = cls(weights={n: float(v) for n, v in zip(names, w, strict=True)}, n_valid=len(y))
        ens.member_metrics = {n: binary_metrics(y, P[:, i]) for i, n in enumerate(names)}
        ens.metrics = binary_metrics(y, P @ w)
        return ens

    def predict(self, predictions: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.weights if n not in predictions]
        if missing:
            raise ValueError(f"ensemble members {missing} have no predictions; got {sorted(predictions)}")
        return sum(w * np.asarray(predictions[n], dtype=np.float64) for n, w in self.weights.items())

    def to_dict(self) -> dict:
        return {"method": "soft_vote", "objective": "validation_logloss", **asdict(self)}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SoftVoteEnsemble:
        d = json.loads(Path(path).read_text())
        if d.get("method") != "soft_vote":
            raise ValueError(f"{path} is not a soft-vote ensemble file (method={d.get('method')!r})")
        return cls(weights={k: float(v) for k, v in d["weights"].items()}, member_metrics=d["member_metrics"],
                   metrics=d["metrics"], n_valid=int(d["n_valid"]))
