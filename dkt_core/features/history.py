"""Past-only features of each interaction from the student's own history (no label leakage).

Every value of row t is computed from rows < t of the same student: counts and accuracies per student,
per student x tag / test / item / head, per "cycle" (one sitting of a test: a new cycle starts when the
test changes; retaking a test is a new cycle), recent-window accuracy, streaks, time since the tag was
last practised, and how much better than expected (by item difficulty) the student did so far. Rows to
predict (answerCode -1) count as attempts but never as answers.

Columns are yielded one at a time, grouping by grouping (each user x key grouping is sorted once, used for
all its columns, then dropped): on millions of rows the fresh memory of arrays held at once (page faults)
cost more than the arithmetic, so a caller that writes each column away keeps only a few alive.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dkt_core.data.groupops import Grouping, UserGroupings

PRIOR_STRENGTH = 2.0  # pseudo-answers at the prior accuracy, so a first attempt has a finite accuracy
RECENT_WINDOWS = (5, 10)


def _acc(correct: np.ndarray, known: np.ndarray, prior: float) -> np.ndarray:
    out = np.add(correct, PRIOR_STRENGTH * prior, dtype=np.float64)
    out /= np.add(known, PRIOR_STRENGTH, dtype=np.float64)
    return out


def history_columns(
    groups: UserGroupings,
    item: np.ndarray,
    test: np.ndarray,
    tag: np.ndarray,
    head: np.ndarray,
    answer: np.ndarray,
    seconds: np.ndarray,
    prior: float,
    expected: np.ndarray,
    tag_acc: np.ndarray,
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float64 column) pairs. All arguments are arrays in row order (sorted by user, then time):
    int codes, ``answer`` in {-1,0,1}, ``expected`` P(correct) by item difficulty (for the residuals),
    ``tag_acc`` the tag's population accuracy (for the student's gap to it)."""
    all_known = bool((answer >= 0).all())  # labelled rows only (training, evaluation): counts are the sums
    known = answer >= 0
    correct = answer == 1  # 0/1 sums are exact integer sums (groupops): the same numbers as float sums
    resid = (answer == 1) - expected if all_known else np.where(answer >= 0, (answer == 1) - expected, 0.0)

    user = groups.user
    by_user = groups.by("user")
    pos = by_user.count_before()
    yield "user_cnt", np.log1p(pos)
    u_known = pos if all_known else by_user.sum_before(known)
    yield "user_acc", _acc(by_user.sum_before(correct), u_known, prior)
    yield "user_resid", by_user.sum_before(resid) / (u_known + PRIOR_STRENGTH)
    del u_known
    for w in RECENT_WINDOWS:
        yield f"recent_acc_{w}", _acc(by_user.window_sum_before(correct, w), _window_known(by_user, known, w, all_known),
                                      prior)
    prev = by_user.previous(answer, fill=-2)  # -2: no previous row
    yield "prev_answer_num", np.where(prev >= 0, prev, 0.5).astype(np.float64)
    del prev
    # correct streak: rows since the last wrong answer (or since the start)
    last_wrong = by_user.last_where_before(answer == 0, pos, fill=-1)
    yield "correct_streak", np.log1p(pos - last_wrong - 1)
    del last_wrong
    yield "is_first", (pos == 0).astype(np.float64)
    del pos

    # cycles: a sitting of one test; cycle id increases whenever the test changes within a user
    new_cycle = np.ones(len(user), dtype=bool)
    new_cycle[1:] = (test[1:] != test[:-1]) | (user[1:] != user[:-1])
    by_cycle = Grouping(np.cumsum(new_cycle))
    yield "cycle_pos", by_cycle.count_before().astype(np.float64)
    yield "cycle_acc", _acc(by_cycle.sum_before(correct), by_cycle.count_before() if all_known else
                            by_cycle.sum_before(known), prior)
    del by_cycle

    for name, key in (("tag", tag), ("test", test), ("item", item), ("head", head)):
        g = groups.by(name, key)
        n_before = g.count_before()
        yield f"user_{name}_cnt", np.log1p(n_before)
        g_known = n_before if all_known else g.sum_before(known)
        user_acc = _acc(g.sum_before(correct), g_known, prior)
        yield f"user_{name}_acc", user_acc
        if name == "item":
            yield "user_item_last", g.previous(answer, fill=-1).astype(np.float64)
        if name == "tag":
            yield "tag_acc_gap", user_acc - tag_acc
            yield "user_tag_resid", g.sum_before(resid) / (g_known + PRIOR_STRENGTH)
            yield "user_tag_recent_acc_3", _acc(g.window_sum_before(correct, 3), _window_known(g, known, 3, all_known),
                                                prior)
            last_seen = g.previous(seconds, fill=-1)  # the tag's previous row: the last time it was practised
            since = np.where(last_seen >= 0, seconds - last_seen, 10 * 86400)
            yield "tag_seconds_since", np.log1p(np.clip(since, 0, None)).astype(np.float64)
        if name == "test":
            sittings = g.sum_before(new_cycle) + new_cycle  # incl. the current one
            yield "test_sittings_before", np.log1p(sittings - 1)
        del n_before, g_known, user_acc
        groups.release(name)


def _window_known(g: Grouping, known: np.ndarray, window: int, all_known: bool) -> np.ndarray:
    """Answered rows among the previous ``window`` rows of the group (all of them when every row is answered)."""
    return np.minimum(g.count_before(), window) if all_known else g.window_sum_before(known, window)
