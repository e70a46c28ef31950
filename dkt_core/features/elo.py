"""Elo-style online rating of student ability against item difficulty.

Item difficulty d = -logit(smoothed item accuracy of the training users) (out-of-fold on training
rows). Each student's ability starts at 0 and is updated after every answer with a step that shrinks
as the student answers more: theta += K / (1 + a * n) * (y - sigmoid(theta - d)). The feature for row t
is the rating *before* row t and the implied P(correct). The recursion is sequential within a student,
so it is vectorised across students: one numpy step per position index, not per row. A few students (a
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


def elo_ratings(user: np.ndarray, pos: np.ndarray, difficulty: np.ndarray, answer: np.ndarray, *,
                vectorised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ability before each row, P(correct) = sigmoid(ability - difficulty)) in row order. ``vectorised``:
    never the per-student loop (chunks of a large log: the same arithmetic as the whole log's, bit for bit)."""
    n_users = int(user.max(initial=-1)) + 1
    if n_users <= PER_STUDENT_MAX_USERS and not vectorised:
        return _per_student(user, difficulty, answer)
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
    return -np.log(acc / (1 - acc))


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
