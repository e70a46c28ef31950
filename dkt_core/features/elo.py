"""Elo-style online rating of student ability against item difficulty.

Item difficulty d = -logit(smoothed item accuracy of the training users) (out-of-fold on training
rows). Each student's ability starts at 0 and is updated after every answer with a step that shrinks
as the student answers more: theta += K / (1 + a * n) * (y - sigmoid(theta - d)). The feature for row t
is the rating *before* row t and the implied P(correct). The recursion is sequential within a student,
so it is vectorised across students: one numpy step per position index, not per row (rows laid out position
by position, students longest history first, so a step works on contiguous slices). A few students (a
serving batch) go through a plain Python loop per student instead: ~20 us of numpy overhead per position
step costs more than the rows themselves there.
"""

from __future__ import annotations

import math

import numpy as np

K = 0.4
DECAY = 0.05
PER_STUDENT_MAX_USERS = 64  # below this many students the per-student loop beats the per-position one


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sigmoid_inplace(x: np.ndarray) -> np.ndarray:
    """``_sigmoid(x)`` written into ``x`` (the same float operations, no temporaries)."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1.0
    return np.divide(1.0, x, out=x)


def elo_ratings(user: np.ndarray, pos: np.ndarray, difficulty: np.ndarray, answer: np.ndarray, *,
                vectorised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ability before each row, P(correct) = sigmoid(ability - difficulty)) in row order. ``vectorised``:
    never the per-student loop (chunks of a large log: the same arithmetic as the whole log's, bit for bit)."""
    n_users = int(user.max(initial=-1)) + 1
    if n_users <= PER_STUDENT_MAX_USERS and not vectorised:
        return _per_student(user, difficulty, answer)
    layout = _position_major(user, pos, n_users)
    if layout is None:
        return _by_position(user, pos, difficulty, answer, n_users)
    rows, bounds = layout
    # students relabelled longest history first: the students with a row at position p are labels 0..k-1,
    # so each step reads and writes a slice of the ratings, not scattered entries
    theta = np.zeros(n_users)
    answered = np.zeros(n_users)
    diffs, answers = difficulty[rows], answer[rows]
    all_known = bool((answer >= 0).all())
    before_sorted = np.empty(len(user))
    for p in range(len(bounds) - 1):
        a, b = bounds[p], bounds[p + 1]
        t = theta[:b - a]
        before_sorted[a:b] = t
        y = answers[a:b]
        if all_known:
            # every earlier row answered: each student here has answered exactly p rows, so the step size is
            # one number; the operations of the general step below, in place (the same float arithmetic)
            x = _sigmoid_inplace(np.subtract(t, diffs[a:b]))
            np.subtract(y, x, out=x)
            x *= K / (1.0 + DECAY * float(p))
            np.add(t, x, out=t)
            continue
        known = y >= 0
        n_answered = answered[:b - a]
        step = K / (1.0 + DECAY * n_answered) * (np.where(known, y, 0) - _sigmoid(t - diffs[a:b]))
        theta[:b - a] = t + np.where(known, step, 0.0)
        n_answered += known
    before = np.empty(len(user))
    before[rows] = before_sorted
    del before_sorted
    return before, _sigmoid_inplace(np.subtract(before, difficulty))


def _position_major(user: np.ndarray, pos: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(row of each (position, student) pair, position by position with students longest history first; the
    start of each position's block), for rows grouped by student in time order (pos = index in the student's
    rows, as the pipeline gives them). None for anything else."""
    n = len(user)
    counts = np.bincount(user, minlength=n_users)
    start = np.zeros(n_users, dtype=np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    if n and not (np.all(user[1:] >= user[:-1]) and np.array_equal(pos, np.arange(n) - start[user])):
        return None
    by_length = np.argsort(-counts, kind="stable")  # labels: longest history first
    longest = int(counts.max(initial=0))
    # students with a row at position p: those with more than p rows
    active = n_users - np.cumsum(np.bincount(counts, minlength=longest + 1))[:longest]
    bounds = np.zeros(longest + 1, dtype=np.int64)
    np.cumsum(active, out=bounds[1:])
    label = np.arange(n, dtype=np.int64)
    label -= np.repeat(bounds[:-1], active)  # the student's label within its position's block
    rows = start[by_length][label]
    rows += np.repeat(np.arange(longest, dtype=np.int64), active)
    return rows, bounds


def _by_position(user: np.ndarray, pos: np.ndarray, difficulty: np.ndarray, answer: np.ndarray, n_users: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The recursion for rows in any order (students' rows still in time order): rows gathered per position."""
    theta = np.zeros(n_users)
    answered = np.zeros(n_users)
    before = np.zeros(len(user))
    order = np.argsort(pos, kind="stable")  # rows grouped by position; users distinct within a group
    bounds = np.searchsorted(pos[order], np.arange(int(pos.max(initial=-1)) + 2))
    for p in range(len(bounds) - 1):
        rows = order[bounds[p]:bounds[p + 1]]
        u = user[rows]
        t = theta[u]
        before[rows] = t
        y = answer[rows]
        known = y >= 0
        step = K / (1.0 + DECAY * answered[u]) * (np.where(known, y, 0) - _sigmoid(t - difficulty[rows]))
        theta[u] = t + np.where(known, step, 0.0)
        answered[u] += known
    return before, _sigmoid(before - difficulty)


def difficulty_from_accuracy(acc: np.ndarray) -> np.ndarray:
    acc = np.clip(acc, 1e-3, 1 - 1e-3)
    odds = np.subtract(1, acc)  # -log(acc / (1 - acc)), in place
    np.divide(acc, odds, out=odds)
    np.log(odds, out=odds)
    return np.negative(odds, out=odds)


def _per_student(user: np.ndarray, difficulty: np.ndarray, answer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same recursion, one student at a time (rows of a student in time order, students in any order)."""
    order = np.argsort(user, kind="stable")
    starts = np.flatnonzero(np.r_[True, user[order][1:] != user[order][:-1]]).tolist() + [len(order)]
    d_all, y_all = difficulty[order].tolist(), answer[order].tolist()
    before_sorted = []
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        theta, answered = 0.0, 0
        for d, y in zip(d_all[a:b], y_all[a:b], strict=True):
            before_sorted.append(theta)
            if y >= 0:
                theta += K / (1.0 + DECAY * answered) * (y - 1.0 / (1.0 + math.exp(d - theta)))
                answered += 1
    before = np.empty(len(user))
    before[order] = before_sorted
    return before, _sigmoid(before - difficulty)
