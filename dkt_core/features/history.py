"""Past-only features of each interaction from the student's own history (no label leakage).

Every value of row t is computed from rows < t of the same student: counts and accuracies per student,
per student x tag / test / item / head, per "cycle" (one sitting of a test: a new cycle starts when the
test changes; retaking a test is a new cycle), recent-window accuracy, streaks, time since the tag was
last practised. Rows to predict (answerCode -1) count as attempts but never as answers.
"""

from __future__ import annotations

import numpy as np

from dkt_core.data.groupops import Grouping, UserGroupings

PRIOR_STRENGTH = 2.0  # pseudo-answers at the prior accuracy, so a first attempt has a finite accuracy
RECENT_WINDOWS = (5, 10)


def _acc(correct: np.ndarray, known: np.ndarray, prior: float) -> np.ndarray:
    return (correct + PRIOR_STRENGTH * prior) / (known + PRIOR_STRENGTH)


def history_features(
    groups: UserGroupings,
    item: np.ndarray,
    test: np.ndarray,
    tag: np.ndarray,
    head: np.ndarray,
    answer: np.ndarray,
    seconds: np.ndarray,
    prior: float,
) -> dict[str, np.ndarray]:
    """All arguments are int code arrays in row order (sorted by user, then time); ``answer`` in {-1,0,1}."""
    known = (answer >= 0).astype(np.float64)
    correct = (answer == 1).astype(np.float64)
    wrong = answer == 0
    out: dict[str, np.ndarray] = {}

    user = groups.user
    by_user = groups.by("user")
    pos = by_user.count_before()
    out["user_cnt"] = np.log1p(pos)
    u_known = by_user.sum_before(known)
    out["user_acc"] = _acc(by_user.sum_before(correct), u_known, prior)
    for w in RECENT_WINDOWS:
        out[f"recent_acc_{w}"] = _acc(by_user.window_sum_before(correct, w), by_user.window_sum_before(known, w), prior)
    prev = by_user.previous(answer, fill=-2)  # -2: no previous row
    out["prev_answer_num"] = np.where(prev >= 0, prev, 0.5).astype(np.float64)
    # correct streak: rows since the last wrong answer (or since the start)
    last_wrong = by_user.last_where_before(wrong, pos, fill=-1)
    out["correct_streak"] = np.log1p(pos - last_wrong - 1)

    for name, key in (("tag", tag), ("test", test), ("item", item), ("head", head)):
        g = groups.by(name, key)
        out[f"user_{name}_cnt"] = np.log1p(g.count_before())
        out[f"user_{name}_acc"] = _acc(g.sum_before(correct), g.sum_before(known), prior)
        if name == "item":
            out["user_item_last"] = g.previous(answer, fill=-1).astype(np.float64)
        if name == "tag":
            out["user_tag_recent_acc_3"] = _acc(g.window_sum_before(correct, 3), g.window_sum_before(known, 3), prior)
            last_seen = g.last_where_before(np.ones(len(user), bool), seconds, fill=-1)
            since = np.where(last_seen >= 0, seconds - last_seen, 10 * 86400)
            out["tag_seconds_since"] = np.log1p(np.clip(since, 0, None)).astype(np.float64)

    # cycles: a sitting of one test; cycle id increases whenever the test changes within a user
    new_cycle = np.ones(len(user), dtype=bool)
    new_cycle[1:] = (test[1:] != test[:-1]) | (user[1:] != user[:-1])
    cycle = np.cumsum(new_cycle)
    by_cycle = Grouping(cycle)
    out["cycle_pos"] = by_cycle.count_before().astype(np.float64)
    out["cycle_acc"] = _acc(by_cycle.sum_before(correct), by_cycle.sum_before(known), prior)
    sittings = groups.by("test", test).sum_before(new_cycle) + new_cycle  # incl. the current one
    out["test_sittings_before"] = np.log1p(sittings - 1)
    out["is_first"] = (pos == 0).astype(np.float64)
    return out


def residual_features(groups: UserGroupings, tag: np.ndarray, answer: np.ndarray, expected: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """How much better than expected (by item difficulty) the student did so far, overall and per tag:
    mean of (answer - expected P(correct)) over earlier answered rows."""
    known = (answer >= 0).astype(np.float64)
    resid = np.where(answer >= 0, (answer == 1) - expected, 0.0)
    out = {}
    for name, g in (("user_resid", groups.by("user")), ("user_tag_resid", groups.by("tag", tag))):
        out[name] = g.sum_before(resid) / (g.sum_before(known) + PRIOR_STRENGTH)
    return out
