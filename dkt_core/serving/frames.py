"""Request rows -> the typed, sorted interaction frame that ``dkt predict`` would build from a file.

Equivalence with ``dkt predict`` (load_interactions -> FeaturePipeline -> ensemble) holds because the frame
is built exactly like validation builds one: fields stripped, ``answerCode`` int8 (targets are -1 rows),
``Timestamp`` parsed with the seed format, exact duplicate rows dropped (first kept), rows sorted stably per
student by time. Pandera is skipped: the pydantic request models already enforced the contract.

Two serving-only rules:
- each student of a request is an independent user (internal id = position), so a request carrying the
  same userID twice never mixes histories;
- a history longer than ``HISTORY_WINDOW`` keeps only its most recent ``HISTORY_WINDOW`` interactions
  (by time). Within the window the served prediction equals ``dkt predict`` on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dkt_core import settings
from dkt_core.api import StudentRequest
from dkt_core.data.columns import COLUMNS

# 400 interactions: ~2x the longest test sitting sequence models look at, and a bound on per-request CPU
# (features are cumulative, so older rows matter only through counts/accuracies).
HISTORY_WINDOW = settings.HISTORY_WINDOW.default  # DKT_HISTORY_WINDOW: the service passes the loaded value


@dataclass
class RequestFrame:
    frame: pd.DataFrame  # typed seed columns, sorted per user by time, duplicates dropped
    target_rows: np.ndarray  # frame row of every requested target, in request order (flattened)
    target_counts: list[int]  # targets per student
    truncated: int  # history rows dropped by the window


def build_frame(students: Sequence[StudentRequest], window: int = HISTORY_WINDOW) -> RequestFrame:
    users: list[int] = []
    items: list[str] = []
    tests: list[str] = []
    answers: list[int] = []
    stamps: list[str] = []
    tags: list[str] = []
    is_target: list[bool] = []
    truncated = 0
    for s_idx, student in enumerate(students):
        history = student.history
        if len(history) > window:
            # the most recent interactions by time (stable for ties, like the sort below); the fixed-width
            # "YYYY-MM-DD HH:MM:SS" strings (checked by the request models) sort like the times they name
            order = np.argsort(np.asarray([h["Timestamp"] for h in history]), kind="stable")
            keep = np.sort(order[-window:])
            truncated += len(history) - window
            history = [history[i] for i in keep]
        rows = [*history, *student.targets]
        users += [s_idx] * len(rows)
        items += [r["assessmentItemID"].strip() for r in rows]
        tests += [r["testId"].strip() for r in rows]
        tags += [r["KnowledgeTag"].strip() for r in rows]
        stamps += [r["Timestamp"] for r in rows]
        answers += [h["answerCode"] for h in history]
        answers += [-1] * len(student.targets)
        is_target += [False] * len(history)
        is_target += [True] * len(student.targets)
    columns = {"userID": np.asarray(users, dtype=np.int64), "assessmentItemID": _objects(items),
               "testId": _objects(tests), "answerCode": np.asarray(answers, dtype=np.int8),
               "Timestamp": _timestamps(stamps), "KnowledgeTag": _objects(tags)}
    frame, target_rows = _dedupe_and_sort(columns, np.asarray(is_target, dtype=bool))
    return RequestFrame(frame, target_rows, [len(s.targets) for s in students], truncated)


def _objects(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _timestamps(stamps: list[str]) -> np.ndarray:
    """Seed-format strings -> datetime64[ns]; numpy's ISO parser (the request models already checked the
    shape and the calendar) is ~20x faster than pandas' format parser on a request's rows."""
    return np.asarray(stamps, dtype="datetime64[s]").astype("datetime64[ns]")


def _first_of_equal_rows(columns: dict[str, np.ndarray]) -> np.ndarray:
    """For every row, the index of the first row equal to it in all columns (itself when unique):
    integer codes per column, one stable lexsort, equal neighbours share their group's first row."""
    n = len(columns["userID"])
    keys = np.empty((len(COLUMNS), n), dtype=np.int64)
    for j, c in enumerate(COLUMNS):
        col = columns[c]
        keys[j] = pd.factorize(col)[0] if col.dtype == object else col.view(np.int64) if col.dtype.kind == "M" else col
    order = np.lexsort(keys[::-1])  # stable: within a group of equal rows, the first row comes first
    ordered = keys[:, order]
    starts = np.r_[True, (ordered[:, 1:] != ordered[:, :-1]).any(axis=0)] if n else np.zeros(0, dtype=bool)
    first = order[np.flatnonzero(starts)]
    survivor = np.empty(n, dtype=np.int64)
    survivor[order] = first[np.cumsum(starts) - 1]
    return survivor


def _dedupe_and_sort(columns: dict[str, np.ndarray], is_target: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Drop exact duplicates (first kept, as validation does), sort stably per user by time, and return the
    typed frame and the sorted-frame row of every target (a duplicated target points at its survivor)."""
    survivor = _first_of_equal_rows(columns)
    kept = np.flatnonzero(survivor == np.arange(len(survivor)))
    # users are numbered in request order, which is the first-appearance order sort_interactions uses
    order = kept[np.lexsort((columns["Timestamp"][kept], columns["userID"][kept]))]
    position = np.empty(len(survivor), dtype=np.int64)
    position[order] = np.arange(len(order))
    frame = pd.DataFrame({c: columns[c][order] for c in COLUMNS}, copy=False)  # strings become str dtype
    frame["userID"] = frame["userID"].astype(str)  # internal ids "0", "1", ... like a file's userIDs
    return frame, position[survivor[is_target]]
