"""What the student and teacher pages show, computed from the state database and the model's answers
(pure functions; the app fetches, these shape).

At risk (teacher view): a student whose mean mastery over the skills they practised is below
``AT_RISK_MASTERY``, or whose mastery is falling: the mean of the latest snapshot is more than
``FALLING_BY`` below the snapshot ``FALLING_WINDOW`` or more answers earlier (over the skills both hold).
Without a model answer, mastery is the student's share of correct answers (the page says so).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

from dkt_core.webclient.bank import CHOICES, Item, QuestionBank

AT_RISK_MASTERY = 0.5
FALLING_BY = 0.05
FALLING_WINDOW = 5
MAX_LINES = 6  # skills drawn over time on the progress chart (the page says "N of M")
MAX_BARS = 15
CLASS_SKILLS = 10  # heatmap columns: the class's most practised skills


def choice_text(item: Item, letter: str | None) -> str:
    """``B: 56`` (or just ``B`` when the item has no content; ``-`` for no letter)."""
    if not letter:
        return "-"
    if item.has_content and letter in CHOICES:
        return f"{letter}: {item.choices[CHOICES.index(letter)]}"
    return letter


def scope_key(subject: str, grade: int | None) -> str:
    return f"{subject}|{grade if grade is not None else '-'}"


def scope_label(scope: str) -> str:
    if scope == "all":
        return "everything"
    subject, _, grade = scope.partition("|")
    return subject if grade == "-" else f"{subject}, grade {grade}"


def sittings(rows: Sequence[Mapping], bank: QuestionBank) -> list[dict]:
    """The student's test sittings in order: each ``len(test)`` answers of a test form one (the last may be
    in progress)."""
    out: list[dict] = []
    open_: dict[str, dict] = {}
    for r in rows:
        test = r["testId"]
        if test not in bank.tests:
            continue
        s = open_.get(test)
        if s is None or s["answered"] == s["n_items"]:
            s = {"test": test, "name": bank.info(test).name, "started": r["Timestamp"], "answered": 0,
                 "correct": 0, "n_items": len(bank.tests[test])}
            open_[test] = s
            out.append(s)
        s["answered"] += 1
        s["correct"] += int(r["answerCode"])
    for s in out:
        s["complete"] = s["answered"] == s["n_items"]
        s["latest"] = open_[s["test"]] is s
    return out


def progress(bank: QuestionBank, history: Sequence[Mapping], snapshots: Sequence[tuple[int, str, dict]],
             current: Mapping[str, float]) -> dict:
    """Bars of the current mastery (weakest first) and lines over time for the most practised skills."""
    attempts: dict[str, int] = {}
    for h in history:
        attempts[h["KnowledgeTag"]] = attempts.get(h["KnowledgeTag"], 0) + 1
    tags = [t for t in current if t in attempts] or list(current)
    bar_rows = sorted(((t, bank.tag_name(t), float(current[t])) for t in tags), key=lambda r: (r[2], r[0]))
    drawn = sorted(attempts, key=lambda t: (-attempts[t], t))[:MAX_LINES]
    series = []
    for t in drawn:
        pts = [(n, float(tags_[t])) for n, _, tags_ in snapshots if t in tags_]
        if pts:
            series.append((bank.tag_name(t), pts))
    return {"bar_rows": bar_rows[:MAX_BARS], "bars_of": len(bar_rows), "series": series,
            "series_of": len(attempts), "answers": len(history), "snapshots": len(snapshots),
            "accuracy": (sum(int(h["answerCode"]) for h in history) / len(history)) if history else None}


def checkpoints(n: int, k: int) -> list[int]:
    """Up to ``k`` answer counts in 1..n, evenly spread, always including n."""
    if n <= 0:
        return []
    return sorted({max(1, round(n * (i + 1) / k)) for i in range(k)} | {n})


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def falling(snapshots: Sequence[tuple[int, str, dict]]) -> float | None:
    """Change of mean mastery from the snapshot ``FALLING_WINDOW`` or more answers before the latest, over
    the skills both hold (None: too few snapshots)."""
    if len(snapshots) < 2:
        return None
    n_last, _, last = snapshots[-1]
    earlier = [s for s in snapshots[:-1] if s[0] <= n_last - FALLING_WINDOW]
    if not earlier:
        return None
    before = earlier[-1][2]
    common = [t for t in last if t in before]
    if not common:
        return None
    return _mean([last[t] for t in common]) - _mean([before[t] for t in common])


def student_row(student: Mapping, history: Sequence[Mapping], state, snapshots) -> dict:
    """One heatmap row: mastery per skill (the model's, else none), its mean, accuracy, risk and reasons."""
    mastery = dict(state.value) if isinstance(state.value, dict) else {}
    practised = {h["KnowledgeTag"] for h in history}
    acc = (sum(int(h["answerCode"]) for h in history) / len(history)) if history else None
    mean = _mean([mastery[t] for t in practised if t in mastery])
    change = falling(snapshots)
    reasons = []
    level = mean if mean is not None else acc
    if level is not None and level < AT_RISK_MASTERY:
        reasons.append(f"low mastery ({level:.0%}{'' if mean is not None else ' correct answers'})")
    if change is not None and change < -FALLING_BY:
        reasons.append(f"falling ({change:+.0%} over the last {FALLING_WINDOW}+ answers)")
    return {"username": student["username"], "user_id": student["user_id"], "answers": len(history),
            "accuracy": acc, "mastery": mastery, "mean": mean, "change": change, "risk": reasons,
            "error": state.error, "version": getattr(state, "model_version", None)}


def class_skills(rows: Sequence[Mapping], bank: QuestionBank) -> list[tuple[str, str]]:
    """(tag, name) of the skills the class's model answers cover most (students holding them), at most
    ``CLASS_SKILLS``."""
    count: dict[str, int] = {}
    for r in rows:
        for t in r["mastery"]:
            count[t] = count.get(t, 0) + 1
    return [(t, bank.tag_name(t)) for t in sorted(count, key=lambda t: (-count[t], t))[:CLASS_SKILLS]]


def _cell(text: str) -> str:
    """A spreadsheet reads a cell starting with = + - @ as a formula: such text is quoted."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def class_csv(rows: Sequence[Mapping], skills: Sequence[tuple[str, str]]) -> str:
    """The class view as CSV: one line per student, mastery per skill column (empty when unknown)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["username", "userID", "answers", "accuracy", "mean_mastery", "at_risk", "reasons",
                *(_cell(f"{name} [{tag}]") for tag, name in skills)])
    for r in rows:
        w.writerow([_cell(r["username"]), r["user_id"], r["answers"],
                    "" if r["accuracy"] is None else f"{r['accuracy']:.4f}",
                    "" if r["mean"] is None else f"{r['mean']:.4f}", int(bool(r["risk"])), "; ".join(r["risk"]),
                    *("" if t not in r["mastery"] else f"{r['mastery'][t]:.4f}" for t, _ in skills)])
    return out.getvalue()
