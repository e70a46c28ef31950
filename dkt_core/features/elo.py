"""Elo-style online rating of student ability against item difficulty.

Item difficulty d = -logit(smoothed item accuracy of the training users) (out-of-fold on training
rows). Each student's ability starts at 0 and is updated after every answer with a step that shrinks
as the student answers more: theta += K / (1 + a * n) * (y - sigmoid(theta - d)). The feature for row t
is the rating *before* row t and the implied P(correct). The recursion is sequential within a student,
so it is vectorised across students: one numpy step per position index, not per row.
"""

from __future__ import annotations

import math

import numpy as np

K = 0.4
DECAY = 0.05


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def elo_ratings(user: np.ndarray, pos: np.ndarray, difficulty: np.ndarray, answer: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(ability before each row, P(correct) = sigmoid(ability - difficulty)) in row order."""
    n_users = int(user.max(initial=-1)) + 1
    if n_users == 1:  # one student (a serving request): the same recursion without numpy's per-step cost
        return _single_user(difficulty, answer)
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


def _single_user(difficulty: np.ndarray, answer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    theta, answered = 0.0, 0
    before = np.empty(len(answer))
    for i, (d, y) in enumerate(zip(difficulty.tolist(), answer.tolist(), strict=True)):
        before[i] = theta
        if y >= 0:
            theta += K / (1.0 + DECAY * answered) * (y - 1.0 / (1.0 + math.exp(d - theta)))
            answered += 1
    return before, _sigmoid(before - difficulty)
