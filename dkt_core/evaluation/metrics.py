"""Metrics of the knowledge-tracing task.

- all-item: every answered interaction predicted from its own past (AUC, ACC, log-loss);
- last-item: each user's last answered interaction predicted from the rest (the competition protocol).
Confidence intervals come from a bootstrap over *users* (rows of one user are not independent).
AUC is computed from one sort; each bootstrap replicate only re-weights rows (O(n) per replicate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-7


def weighted_auc(order: np.ndarray, group_start: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """AUC with row weights; ``order`` sorts scores ascending, ``group_start`` marks tied-score blocks."""
    pos = np.add.reduceat((w * y)[order], group_start)
    neg = np.add.reduceat((w * (1 - y))[order], group_start)
    p_total, n_total = pos.sum(), neg.sum()
    if p_total == 0 or n_total == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + 0.5 * neg)) / (p_total * n_total))


def _sorted_blocks(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def auc(y: np.ndarray, score: np.ndarray) -> float:
    order, starts = _sorted_blocks(np.asarray(score, dtype=np.float64))
    return weighted_auc(order, starts, np.asarray(y, dtype=np.float64), np.ones(len(y)))


def _bootstrap_auc(user: np.ndarray, y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    if n_boot <= 0 or len(y) == 0:
        return float("nan"), float("nan")
    codes, _ = pd.factorize(user)
    n_users = int(codes.max()) + 1
    order, starts = _sorted_blocks(p)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_users, n_users), minlength=n_users).astype(np.float64)
        draws.append(weighted_auc(order, starts, y, counts[codes]))
    if np.isnan(draws).all():  # e.g. a single class among the users
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def evaluate_predictions(users: np.ndarray, labels: np.ndarray, proba: np.ndarray, *, n_boot: int = 100,
                         seed: int = 0) -> dict[str, float]:
    """Metrics for rows in time order per user (labels -1 are ignored: nothing to score)."""
    users, labels, proba = np.asarray(users), np.asarray(labels), np.asarray(proba, dtype=np.float64)
    known = labels >= 0
    u, y, p = users[known], labels[known].astype(np.float64), proba[known]
    if len(y) == 0:
        raise ValueError("no answered interactions to evaluate (every answerCode is -1)")
    # last answered row per user: the row after which the user id changes
    last = np.r_[u[1:] != u[:-1], True]
    pc = np.clip(p, EPS, 1 - EPS)
    out = {
        "n_users": int(last.sum()),
        "n_rows": int(len(y)),
        "auc_all": auc(y, p),
        "acc_all": float(np.mean((p >= 0.5) == (y == 1))),
        "logloss_all": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "auc_last": auc(y[last], p[last]),
        "acc_last": float(np.mean((p[last] >= 0.5) == (y[last] == 1))),
    }
    if n_boot > 0:
        out["auc_all_ci95"] = list(_bootstrap_auc(u, y, p, n_boot, seed))
        out["auc_last_ci95"] = list(_bootstrap_auc(u[last], y[last], p[last], n_boot, seed))
    return json_safe(out)


def json_safe(value):
    """NaN/inf -> None recursively, so reports are valid JSON (e.g. AUC of a single-class set)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
