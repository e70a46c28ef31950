"""Metrics of the knowledge-tracing task.

- all-item: every answered interaction predicted from its own past (AUC, ACC, log-loss);
- last-item: each user's last answered interaction predicted from the rest (the competition protocol).
Confidence intervals come from a bootstrap over *users* (rows of one user are not independent).
AUC is computed from one sort; each bootstrap replicate only re-weights rows (O(n) per replicate).

The one home of the metric definitions (issue 14): every AUC in the code base is ``auc`` (tied scores
count one half, NaN for a single class) and every probability goes through ``clip_proba`` (one ``EPS``)
before a log. The models' validation AUC, the ensemble's fit report, the evaluation reports and the gate
all call these; the module imports nothing from dkt_core, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before any log (log loss, the ensemble objective)


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
    """ROC AUC of ``score`` for binary labels ``y`` (ties count one half); NaN when ``y`` has one class
    or no rows. Scores with NaN/inf are refused (a model that produced them needs fixing, not a number)."""
    score = np.asarray(score, dtype=np.float64)
    if len(score) == 0:
        return float("nan")
    if not np.isfinite(score).all():
        raise ValueError(f"{int((~np.isfinite(score)).sum())} of {len(score)} scores are NaN/inf; "
                         "AUC needs finite scores (check the model that produced them)")
    order, starts = _sorted_blocks(score)
    return weighted_auc(order, starts, np.asarray(y, dtype=np.float64), np.ones(len(y)))


def clip_proba(p: np.ndarray) -> np.ndarray:
    """Probabilities as float64 clipped to [EPS, 1 - EPS], so a log of them is finite."""
    return np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities ``p`` (clipped by ``clip_proba``) for labels ``y``."""
    y, pc = np.asarray(y, dtype=np.float64), clip_proba(p)
    return float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Share of rows where ``p >= 0.5`` agrees with the label."""
    return float(np.mean((np.asarray(p) >= 0.5) == (np.asarray(y) == 1)))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, log loss and accuracy of probabilities ``p`` for labels ``y`` (all rows answered)."""
    return {"auc": auc(y, p), "logloss": log_loss(y, p), "acc": accuracy(y, p)}


def user_bootstrap(users: np.ndarray, statistic: Callable[[np.ndarray], float], *, n_boot: int, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(row_weights)`` over a bootstrap of *users*.

    Each replicate draws the users with replacement and gives every row its user's draw count as weight,
    so rows of one user move together (they are not independent). ``statistic`` takes the weights and
    returns a float (NaN where undefined, e.g. a single class); the interval ignores NaN replicates and is
    (nan, nan) when there is nothing to resample. A paired statistic (challenger - champion on the same
    replicate) is just a ``statistic`` that computes both.
    """
    if n_boot <= 0 or len(users) == 0:
        return float("nan"), float("nan")
    codes, _ = pd.factorize(np.asarray(users))
    n_users = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        counts = np.bincount(rng.integers(0, n_users, n_users), minlength=n_users).astype(np.float64)
        draws[i] = statistic(counts[codes])
    if np.isnan(draws).all():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def weighted_auc_fn(y: np.ndarray, score: np.ndarray) -> Callable[[np.ndarray], float]:
    """AUC as a function of row weights (one sort, O(n) per call): the bootstrap statistic of AUC."""
    order, starts = _sorted_blocks(np.asarray(score, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64)
    return lambda w: weighted_auc(order, starts, y, w)


def _bootstrap_auc(user: np.ndarray, y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    return user_bootstrap(user, weighted_auc_fn(y, p), n_boot=n_boot, seed=seed)


def paired_auc_difference(users: np.ndarray, labels: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray, *,
                          n_boot: int, seed: int = 0) -> dict:
    """AUC(a) - AUC(b) on the same rows with a *paired* user-bootstrap 95 % interval.

    Both AUCs are computed on the same resample of users in every replicate, so the interval reflects
    the uncertainty of the difference (much narrower than two independent intervals would suggest).
    Rows with label -1 are ignored. JSON-safe: undefined values are None.
    """
    labels = np.asarray(labels)
    known = labels >= 0
    u, y = np.asarray(users)[known], labels[known].astype(np.float64)
    a, b = np.asarray(proba_a, dtype=np.float64)[known], np.asarray(proba_b, dtype=np.float64)[known]
    fa, fb = weighted_auc_fn(y, a), weighted_auc_fn(y, b)
    ones = np.ones(len(y))
    diff = fa(ones) - fb(ones) if len(y) else float("nan")
    lo, hi = user_bootstrap(u, lambda w: fa(w) - fb(w), n_boot=n_boot, seed=seed)
    return json_safe({"diff": diff, "ci95": [lo, hi], "n_rows": int(len(y)), "n_users": int(len(np.unique(u))),
                      "n_boot": int(n_boot), "seed": int(seed)})


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
    out = {
        "n_users": int(last.sum()),
        "n_rows": int(len(y)),
        "auc_all": auc(y, p),
        "acc_all": accuracy(y, p),
        "logloss_all": log_loss(y, p),
        "auc_last": auc(y[last], p[last]),
        "acc_last": accuracy(y[last], p[last]),
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
