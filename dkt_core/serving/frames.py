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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from dkt_core.api import TIMESTAMP_FORMAT, StudentRequest

# 400 interactions: ~2x the longest test sitting sequence models look at, and a bound on per-request CPU
# (features are cumulative, so older rows matter only through counts/accuracies).
HISTORY_WINDOW = int(os.environ.get("DKT_HISTORY_WINDOW", "400"))
COLUMNS = ["userID", "assessmentItemID", "testId", "answerCode", "Timestamp", "KnowledgeTag"]


@dataclass
class RequestFrame:
    frame: pd.DataFrame  # typed seed columns, sorted per user by time, duplicates dropped
    target_rows: np.ndarray  # frame row of every requested target, in request order (flattened)
    target_counts: list[int]  # targets per student
    truncated: int  # history rows dropped by the window


def build_frame(students: Sequence[StudentRequest], window: int = HISTORY_WINDOW) -> RequestFrame:
    users: list[str] = []
    items: list[str] = []
    tests: list[str] = []
    answers: list[int] = []
    stamps: list[str] = []
    tags: list[str] = []
    is_target: list[bool] = []
    truncated = 0
    for s_idx, student in enumerate(students):
        uid = str(s_idx)
        history = student.history
        if len(history) > window:
            # the most recent interactions by time (stable for ties, like the sort below)
            order = sorted(range(len(history)), key=lambda i: _ts_key(history[i].Timestamp))
            keep = sorted(order[-window:])
            truncated += len(history) - window
            history = [history[i] for i in keep]
        for h in history:
            users.append(uid)
            items.append(h.assessmentItemID)
            tests.append(h.testId)
            answers.append(h.answerCode)
            stamps.append(h.Timestamp)
            tags.append(h.KnowledgeTag)
            is_target.append(False)
        for t in student.targets:
            users.append(uid)
            items.append(t.assessmentItemID)
            tests.append(t.testId)
            answers.append(-1)
            stamps.append(t.Timestamp)
            tags.append(t.KnowledgeTag)
            is_target.append(True)
    frame = _typed(users, items, tests, answers, stamps, tags)
    ordered, target_rows = _dedupe_and_sort(frame, np.asarray(is_target, dtype=bool))
    return RequestFrame(ordered, target_rows, [len(s.targets) for s in students], truncated)


def _ts_key(ts: str) -> datetime:
    return datetime.strptime(ts, TIMESTAMP_FORMAT)


def _typed(users, items, tests, answers, stamps, tags) -> pd.DataFrame:
    """The dtypes ``dkt_core.data.validate`` gives a file: str, int8, datetime64[ns]."""
    return pd.DataFrame({
        "userID": pd.Series(users, dtype=str),
        "assessmentItemID": pd.Series(items, dtype=str).str.strip(),
        "testId": pd.Series(tests, dtype=str).str.strip(),
        "answerCode": np.asarray(answers, dtype=np.int8),
        "Timestamp": pd.to_datetime(pd.Series(stamps, dtype=str), format=TIMESTAMP_FORMAT).astype("datetime64[ns]"),
        "KnowledgeTag": pd.Series(tags, dtype=str).str.strip(),
    })


def _dedupe_and_sort(frame: pd.DataFrame, is_target: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Drop exact duplicates (first kept, as validation does), sort stably per user by time, and return the
    sorted-frame row of every target (a duplicated target points at its surviving twin)."""
    keys = list(zip(frame["userID"].to_numpy(), frame["assessmentItemID"].to_numpy(), frame["testId"].to_numpy(),
                    frame["answerCode"].to_numpy().tolist(), frame["Timestamp"].to_numpy().view(np.int64).tolist(),
                    frame["KnowledgeTag"].to_numpy(), strict=True))
    first: dict[tuple, int] = {}
    survivor = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        survivor[i] = first.setdefault(k, i)
    kept = np.flatnonzero(survivor == np.arange(len(keys)))
    dedup = frame.iloc[kept]
    # users are "0", "1", ... in first-appearance order, as sort_interactions orders them
    user_order = pd.factorize(dedup["userID"])[0]
    order = np.lexsort((dedup["Timestamp"].to_numpy(), user_order))
    position = np.empty(len(keys), dtype=np.int64)
    position[kept[order]] = np.arange(len(order))
    return dedup.iloc[order].reset_index(drop=True), position[survivor[is_target]]
