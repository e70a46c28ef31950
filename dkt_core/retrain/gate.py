"""The promotion gate: challenger AUC >= champion AUC - tolerance, on the same hold-out users."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

METRIC = "auc_all"  # every hold-out interaction predicted from its own past: the least noisy AUC


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float | None
    champion: float | None
    tolerance: float
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(challenger: float | None, champion: float | None, *, tolerance: float, champion_version: str | None,
           force: bool = False, metric: str = METRIC) -> GateDecision:
    """Promote or keep the champion; the reason is written for the Airflow UI."""
    if tolerance < 0:
        raise ValueError(f"gate tolerance must be >= 0, got {tolerance}")

    def d(promote: bool, reason: str, forced: bool = False) -> GateDecision:
        return GateDecision(promote, reason, metric, challenger, champion, tolerance, forced)

    if champion_version is None:
        return d(True, "no champion yet: the first model is promoted")
    if challenger is None:
        if force:
            return d(True, f"force_deploy: challenger {metric} is undefined, promoted anyway", True)
        return d(False, f"challenger {metric} is undefined on the hold-out (a single class?); champion kept")
    if champion is None:  # the champion cannot be scored on this hold-out: nothing to beat
        return d(True, f"champion {champion_version} has no {metric} on this hold-out; challenger promoted")
    threshold = champion - tolerance
    cmp = f"challenger {metric} {challenger:.4f} vs champion {champion_version} {champion:.4f} (tolerance {tolerance})"
    if challenger >= threshold:
        return d(True, f"{cmp}: challenger is not worse, promoted")
    if force:
        return d(True, f"force_deploy overrides the gate: {cmp}", True)
    return d(False, f"{cmp}: challenger is below {threshold:.4f}; champion kept")
