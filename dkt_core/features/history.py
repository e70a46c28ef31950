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

from dkt_core.data.deferred import Computed, Deferred
from dkt_core.data.groupops import Grouping, UserGroupings

PRIOR_STRENGTH = 2.0  # pseudo-answers at the prior accuracy, so a first attempt has a finite accuracy
RECENT_WINDOWS = (5, 10)


def _acc(correct: np.ndarray, known: np.ndarray, prior: float) -> np.ndarray:
    out = np.add(correct, PRIOR_STRENGTH * prior, dtype=np.float64)
    out /= np.add(known, PRIOR_STRENGTH, dtype=np.float64)
    return out


def _per_answer(total: np.ndarray, known: np.ndarray) -> np.ndarray:
    return total / (known + PRIOR_STRENGTH)


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
) -> Iterator[tuple[str, np.ndarray | Deferred]]:
    """(name, float64 column) pairs: the student's own rows (per student, per sitting), then the student x tag /
    test / item / head families (their columns in the grouping's order: ``np.asarray`` puts one in row order).

    All arguments are arrays in row order (sorted by user, then time): int codes, ``answer`` in {-1,0,1},
    ``expected`` P(correct) by item difficulty (for the residuals), ``tag_acc`` the tag's population accuracy
    (for the student's gap to it)."""
    user = groups.user
    all_known = bool((answer >= 0).all())  # labelled rows only (training, evaluation): counts are the sums
    known = answer >= 0
    correct = answer == 1  # 0/1 sums are exact integer sums (groupops): the same numbers as float sums
    resid = (answer == 1) - expected if all_known else np.where(answer >= 0, (answer == 1) - expected, 0.0)
    # cycles: a sitting of one test; cycle id increases whenever the test changes within a user
    new_cycle = np.ones(len(user), dtype=bool)
    new_cycle[1:] = (test[1:] != test[:-1]) | (user[1:] != user[:-1])
    yield from _own_columns(groups, answer, prior, all_known, known, correct, resid, new_cycle)
    yield from _key_columns(groups, {"tag": tag, "test": test, "item": item, "head": head}, answer, seconds, prior,
                            all_known, known, correct, resid, new_cycle, tag_acc)


def _own_columns(groups: UserGroupings, answer: np.ndarray, prior: float, all_known: bool, known: np.ndarray,
                 correct: np.ndarray, resid: np.ndarray, new_cycle: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    by_user = groups.by("user")
    pos = by_user.count_before()
    # (each column is computed where it is written, from arrays the next columns need anyway: Computed)
    yield "user_cnt", Computed(np.log1p, pos)
    u_known = pos if all_known else by_user.sum_before(known)
    u_correct = by_user.sum_before(correct)
    yield "user_acc", Computed(_acc, u_correct, u_known, prior)
    yield "user_resid", Computed(_per_answer, by_user.sum_before(resid), u_known)
    for w in RECENT_WINDOWS:  # (the user grouping is in row order: its sums need no reordering)
        w_known = np.minimum(pos, w) if all_known else by_user.window_of(u_known, w)
        yield f"recent_acc_{w}", Computed(_acc, by_user.window_of(u_correct, w), w_known, prior)
    del u_known, u_correct, w_known
    prev = by_user.previous(answer, fill=-2)  # -2: no previous row
    yield "prev_answer_num", np.where(prev >= 0, prev, 0.5)  # float64
    del prev
    # correct streak: rows since the last wrong answer (or since the start). With row numbers i: the last wrong
    # row before i in the log, or the row before the user's first if that is later (no wrong answer yet)
    row = np.arange(len(answer), dtype=np.int64)
    last_wrong = np.where(answer == 0, row, -1)
    np.maximum.accumulate(last_wrong, out=last_wrong)
    streak = np.empty_like(last_wrong)
    streak[:1] = -1
    streak[1:] = last_wrong[:-1]
    del last_wrong
    np.maximum(streak, row - pos - 1, out=streak)
    np.subtract(row, streak, out=streak)
    streak -= 1
    yield "correct_streak", Computed(np.log1p, streak)
    del row, streak
    yield "is_first", (pos == 0).astype(np.float64)
    del pos

    by_cycle = Grouping(np.cumsum(new_cycle))
    yield "cycle_pos", by_cycle.count_before().astype(np.float64)
    yield "cycle_acc", Computed(_acc, by_cycle.sum_before(correct), by_cycle.count_before() if all_known else
                                by_cycle.sum_before(known), prior)


def _key_columns(groups: UserGroupings, keys: dict[str, np.ndarray], answer: np.ndarray, seconds: np.ndarray,
                 prior: float, all_known: bool, known: np.ndarray, correct: np.ndarray, resid: np.ndarray,
                 new_cycle: np.ndarray, tag_acc: np.ndarray) -> Iterator[tuple[str, np.ndarray | Deferred]]:
    # each user x key grouping: its inputs put in group order once, every result computed in group order
    # (elementwise arithmetic: the same numbers either way) and left in it: ``ungroup_later`` lets the writer
    # of the column put it back in row order as it writes it
    for name, key in keys.items():
        g = groups.by(name, key)
        n_before = g.count_before(grouped=True)
        yield f"user_{name}_cnt", g.ungroup_later(Computed(np.log1p, n_before))
        g_correct = g.grouped(correct)
        g_known = None if all_known else g.grouped(known)
        known_before = n_before if all_known else g.sum_before(g_known, grouped=True)
        correct_before = g.sum_before(g_correct, grouped=True)
        if name == "tag":
            user_acc = _acc(correct_before, known_before, prior)
            yield "tag_acc_gap", g.ungroup_later(Computed(np.subtract, user_acc, g.grouped(tag_acc)))
        else:
            user_acc = Computed(_acc, correct_before, known_before, prior)
        yield f"user_{name}_acc", g.ungroup_later(user_acc)
        if name == "item":
            last = g.previous(g.grouped(answer), fill=-1, grouped=True)
            yield "user_item_last", g.ungroup_later(Computed(np.asarray, last, np.float64))
            del last
        if name == "tag":
            resid_sum = g.sum_before(g.grouped(resid), grouped=True)
            yield "user_tag_resid", g.ungroup_later(Computed(_per_answer, resid_sum, known_before))
            del resid_sum
            window_known = np.minimum(n_before, 3) if all_known else g.window_of(known_before, 3)
            yield "user_tag_recent_acc_3", g.ungroup_later(Computed(_acc, g.window_of(correct_before, 3), window_known,
                                                                    prior))
            del window_known
            g_seconds = g.grouped(seconds)
            last_seen = g.previous(g_seconds, fill=-1, grouped=True)  # the tag's previous row: its last practice
            since = np.where(last_seen >= 0, g_seconds - last_seen, 10 * 86400)
            del g_seconds, last_seen
            yield "tag_seconds_since", g.ungroup_later(Computed(np.log1p, np.clip(since, 0, None, out=since)))
        if name == "test":
            g_new = g.grouped(new_cycle)
            sittings = g.sum_before(g_new, grouped=True) + g_new  # incl. the current one
            sittings -= 1
            yield "test_sittings_before", g.ungroup_later(Computed(np.log1p, sittings))
            del g_new, sittings
        del n_before, g_correct, g_known, known_before, correct_before, user_acc
        groups.release(name)
