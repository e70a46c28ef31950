"""The promotion gate: challenger AUC >= champion AUC - tolerance, on the same hold-out users.

The rule is a point comparison on the fixed hold-out (users neither model trained on). The decision
also states the paired difference challenger - champion with its user-bootstrap 95 % interval and the
number of users and rows behind it, so a reader sees whether a "better" or "worse" is within noise.
The rule does not require the interval to clear zero: a challenger trained on more data that is as
good as the champion should replace it (it has seen the new items and users). What keeps a handful of
rows from rolling out a model is the minimum batch upstream (retrain.batch), not the gate.
"""

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
    difference: float | None = None  # challenger - champion on the same hold-out users
    difference_ci95: list[float | None] | None = None  # paired user bootstrap
    n_users: int | None = None
    n_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_difference(paired: dict[str, Any] | None, metric: str = METRIC) -> str:
    """'difference challenger - champion +0.0012 (95 % CI -0.0010..+0.0034; paired bootstrap of 40 users,
    5000 rows)', or '' when there is no paired comparison."""
    if not paired or paired.get("diff") is None:
        return ""
    lo, hi = (paired.get("ci95") or [None, None])[:2]
    ci = "interval undefined" if lo is None or hi is None else f"95 % CI {lo:+.4f}..{hi:+.4f}"
    return (f"difference challenger - champion {metric} {paired['diff']:+.4f} ({ci}; paired bootstrap of "
            f"{paired.get('n_users')} hold-out users, {paired.get('n_rows')} rows, {paired.get('n_boot')} resamples)")


def decide(challenger: float | None, champion: float | None, *, tolerance: float, champion_version: str | None,
           force: bool = False, metric: str = METRIC, paired: dict[str, Any] | None = None) -> GateDecision:
    """Promote or keep the champion; the reason (with the paired difference) is written for the Airflow UI.

    ``paired``: ``dkt_core.evaluation.metrics.paired_auc_difference`` of challenger vs champion on the
    hold-out (from the evaluate step).
    """
    if tolerance < 0:
        raise ValueError(f"gate tolerance must be >= 0, got {tolerance}")
    diff = describe_difference(paired, metric)

    def d(promote: bool, reason: str, forced: bool = False) -> GateDecision:
        if diff:
            reason = f"{reason}; {diff}"
        p = paired or {}
        return GateDecision(promote, reason, metric, challenger, champion, tolerance, forced, p.get("diff"),
                            p.get("ci95"), p.get("n_users"), p.get("n_rows"))

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
