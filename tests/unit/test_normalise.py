"""The one normalisation rule (strip, type, dedupe, per-user stable sort) and the one contract module.

Validation and curation call ``dkt_core.data.normalise.normalise``; serving builds its frame through a
numpy fast path (``dkt_core.serving.frames``), which must give the same frame on the same rows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dkt_core.api import StudentRequest
from dkt_core.data import columns
from dkt_core.data.columns import COLUMNS
from dkt_core.data.normalise import normalise
from dkt_core.serving.frames import build_frame

ROOT = Path(__file__).resolve().parents[2]


def _rows(user: str, rows: list[tuple]) -> list[dict]:
    return [dict(zip(COLUMNS, (user, *r), strict=True)) for r in rows]


def test_normalise_strips_types_dedupes_and_sorts_stably_per_user():
    raw = pd.DataFrame(
        _rows("u2", [(" A1 ", "T", "1", "2020-01-02 00:00:00", "7")])
        + _rows("u1", [("A2", "T", "0", "2020-01-03 00:00:00", "7"),
                       ("A1", "T", "1", "2020-01-01 00:00:00", " 7"),
                       ("A1 ", "T", "1", "2020-01-01 00:00:00", "7"),  # equal to the row above once stripped
                       ("A3", "T", "0", "2020-01-01 00:00:00", "7")])  # same time: keeps arrival order
        + _rows("u2", [("A1", "T", "1", "2020-01-02 00:00:00", "7")]),  # a duplicate of u2's first row
        dtype=str)
    out, dropped = normalise(raw)
    assert dropped == 2
    assert out["userID"].tolist() == ["u2", "u1", "u1", "u1"]  # users by first appearance
    assert out["assessmentItemID"].tolist() == ["A1", "A1", "A3", "A2"]
    assert out["answerCode"].dtype == np.int8 and str(out["Timestamp"].dtype) == "datetime64[ns]"
    again, none = normalise(out)  # idempotent: curation re-applies it to curated rows
    assert none == 0
    pd.testing.assert_frame_equal(again, out)


def test_serving_fast_path_equals_the_rule_on_the_same_rows():
    rng = np.random.default_rng(0)
    students, rows = [], []
    for s in range(5):
        n = 30
        stamps = pd.Timestamp("2020-03-01") + pd.to_timedelta(np.sort(rng.integers(0, 40, n)) * 3600, unit="s")
        hist = [{"assessmentItemID": f" A{rng.integers(0, 6)}", "testId": f"T{s} ", "KnowledgeTag": str(rng.integers(1, 4)),
                 "Timestamp": f"{t:%Y-%m-%d %H:%M:%S}", "answerCode": int(rng.integers(0, 2))} for t in stamps]
        hist = [hist[i] for i in rng.permutation(n)] + hist[:4]  # out of order, with exact duplicates
        last = max(h["Timestamp"] for h in hist)
        targets = [{"assessmentItemID": "A9", "testId": "T", "KnowledgeTag": "1", "Timestamp": last}] * 2
        students.append(StudentRequest(userID="same", history=hist, targets=targets))  # one userID, five students
        rows += [{**h, "userID": str(s)} for h in hist] + [{**t, "answerCode": -1, "userID": str(s)} for t in targets]
    served = build_frame(students)
    expected, _ = normalise(pd.DataFrame(rows)[COLUMNS])
    pd.testing.assert_frame_equal(served.frame, expected)
    assert len(served.target_rows) == 10 and (served.frame["answerCode"].to_numpy()[served.target_rows] == -1).all()


def test_contract_module_needs_only_the_standard_library():
    tree = ast.parse(Path(columns.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_contract_is_written_down_once():
    """No module of the package spells the column list, the Timestamp format or the id pattern again."""
    home = ["dkt_core/data/columns.py"]
    for literal, where in (('"userID", "assessmentItemID"', []), ("%Y-%m-%d %H:%M:%S", home), ("A-Za-z0-9_.:", home)):
        found = subprocess.run(["git", "grep", "--untracked", "-l", "-F", literal, "--", "dkt_core"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split()
        assert found == where, (literal, found)
