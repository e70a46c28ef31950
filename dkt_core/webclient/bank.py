"""Question bank: items (id, test, tag, text, four choices, explanation), skill and test names, answer key.

Three ways to fill it: ``build_bank`` takes the training data's items (id, test, tag) with a placeholder
text ("Item text is not available"); ``with_generated_content`` writes real questions for them
(``content.generate_question``: the demo catalog); ``bank_from_content`` imports a real bank file
(``content.read_content_file``). Tests are grouped by subject and grade (``test_info``).

The answer key is secret: each item's correct choice is an HMAC-SHA256 of the item id under a server
secret (the answer-key file, 0600), never a function of the public id alone (issue 12: ``sha256(id) % 4``
let a script answer everything right). With the same secret, rebuilding the bank from any slice of the
data gives every item the same correct choice. The bank stores the key and is written 0600; the app grades
from it on the server and never sends it to a page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dkt_core.data.columns import COLUMNS
from dkt_core.private_files import ensure_private, write_private

CHOICES = ("A", "B", "C", "D")
SEED_COLUMNS = COLUMNS  # the data contract's column list
BANK_FORMAT = 2  # 2: HMAC answer key; 1 (sha256 of the public id) is refused
KEY_SCHEME = "hmac-sha256"


def answer_for(item_id: str, secret: bytes) -> str:
    """The correct choice of ``item_id`` under ``secret``: stable for one secret, unguessable without it
    (256 % 4 == 0, so the first digest byte picks each choice equally often)."""
    if len(secret) < 16:
        raise ValueError("the answer-key secret must have at least 16 bytes")
    digest = hmac.new(secret, item_id.encode("utf-8"), hashlib.sha256).digest()
    return CHOICES[digest[0] % len(CHOICES)]


NO_TEXT = "Item text is not available"


@dataclass(frozen=True)
class Item:
    item_id: str
    test_id: str
    tag: str
    text: str
    answer: str
    choices: tuple[str, ...] = ()  # the four choice texts (A-D); () when the bank has no content
    explanation: str = ""

    @property
    def has_content(self) -> bool:
        return len(self.choices) == len(CHOICES)


@dataclass(frozen=True)
class QuizInfo:
    name: str
    subject: str
    grade: int | None


class QuestionBank:
    """Items grouped by test, in quiz order; grading against the answer key."""

    def __init__(self, items: dict[str, Item], tests: dict[str, list[str]], source: str = "",
                 tag_names: dict[str, str] | None = None, test_info: dict[str, QuizInfo] | None = None):
        missing = [i for ids in tests.values() for i in ids if i not in items]
        if missing:
            raise ValueError(f"bank lists tests with unknown items, e.g. {missing[:3]}: rebuild the bank")
        self.items = items
        self.tests = tests
        self.source = source
        self.tag_names = dict(tag_names or {})
        self.test_info = dict(test_info or {})

    def tag_name(self, tag: str) -> str:
        """The skill's name (``Skill <tag>`` when the bank has none)."""
        return self.tag_names.get(tag) or f"Skill {tag}"

    def info(self, test_id: str) -> QuizInfo:
        from dkt_core.webclient.content import grade_of

        return self.test_info.get(test_id) or QuizInfo(f"Test {test_id}", "Other", grade_of(test_id))

    def groups(self) -> list[tuple[str, int | None, list[str]]]:
        """Tests grouped by (subject, grade), sorted; tests in a group sorted by name then id."""
        out: dict[tuple[str, int | None], list[str]] = {}
        for t in self.tests:
            info = self.info(t)
            out.setdefault((info.subject, info.grade), []).append(t)
        return [(s, g, sorted(ts, key=lambda t: (self.info(t).name, t)))
                for (s, g), ts in sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1] or 99))]

    def test_items(self, test_id: str) -> list[Item]:
        return [self.items[i] for i in self.tests[test_id]]

    def grade(self, item_id: str, choice: str) -> int:
        """answerCode for ``choice`` on ``item_id``: 1 correct, 0 wrong. Unknown items/choices raise."""
        if item_id not in self.items:
            raise KeyError(f"item {item_id!r} is not in the question bank")
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r} must be one of {', '.join(CHOICES)}")
        return int(self.items[item_id].answer == choice)

    # --- persistence -------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": BANK_FORMAT,
            "answer_key": KEY_SCHEME,
            "source": self.source,
            "tests": self.tests,
            "items": {
                i.item_id: {"test": i.test_id, "tag": i.tag, "text": i.text, "answer": i.answer,
                            **({"choices": list(i.choices), "explanation": i.explanation} if i.choices else {})}
                for i in self.items.values()
            },
            "tag_names": self.tag_names,
            "test_info": {t: {"name": v.name, "subject": v.subject, "grade": v.grade}
                          for t, v in self.test_info.items()},
        }

    def save(self, path: Path) -> None:
        """Write atomically (tmp + rename) so a running client never reads half a bank; mode 0600 (the
        bank holds the answer key)."""
        write_private(Path(path), json.dumps(self.to_json(), indent=1, sort_keys=True).encode())

    @classmethod
    def load(cls, path: Path) -> QuestionBank:
        if not path.exists():
            raise FileNotFoundError(
                f"question bank {path} does not exist: build it with "
                f"`python -m dkt_core.webclient build-bank --data SEED.csv --out {path}`"
            )
        raw = json.loads(path.read_text())
        if raw.get("format") == 1:
            raise ValueError(f"{path} is a format-1 bank whose answer key is public (sha256 of the item id): "
                             f"delete it and rebuild it with `python -m dkt_core.webclient build-bank` (secret key)")
        if raw.get("format") != BANK_FORMAT:
            raise ValueError(f"{path} has bank format {raw.get('format')!r}, expected {BANK_FORMAT}: rebuild it")
        try:
            ensure_private(path)
        except OSError:  # a read-only mount (Docker config/secret): its mode is the deployer's choice
            pass
        items = {
            k: Item(item_id=k, test_id=v["test"], tag=v["tag"], text=v["text"], answer=v["answer"],
                    choices=tuple(v.get("choices", ())), explanation=v.get("explanation", ""))
            for k, v in raw["items"].items()
        }
        info = {t: QuizInfo(v["name"], v["subject"], v.get("grade")) for t, v in raw.get("test_info", {}).items()}
        return cls(items, {t: list(ids) for t, ids in raw["tests"].items()}, raw.get("source", ""),
                   raw.get("tag_names", {}), info)


def read_seed(path: Path) -> pd.DataFrame:
    """The item columns of a seed-format CSV (optionally gzip) or Parquet file, as strings."""
    cols = ["assessmentItemID", "testId", "KnowledgeTag"]
    if path.suffix == ".parquet":
        df = pd.read_parquet(path, columns=cols)
    else:
        df = pd.read_csv(path, usecols=lambda c: c in cols, dtype=str)
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise ValueError(f"{path} lacks seed columns {absent}; expected {', '.join(SEED_COLUMNS)}")
    return df.astype(str)


def build_bank(df: pd.DataFrame, *, answer_secret: bytes, max_items_per_test: int = 10,
               source: str = "") -> QuestionBank:
    """Bank from seed rows: each item's test and tag are its most frequent ones (ties: smallest value);
    each test keeps its ``max_items_per_test`` most answered items (ties: item id), in that order. The key
    is ``answer_for(item, answer_secret)`` (the installation's secret: ``ClientSettings.answer_key_path``, read by
    the ``build-bank`` command)."""
    secret = answer_secret
    if max_items_per_test < 1:
        raise ValueError("max_items_per_test must be >= 1")
    df = df[["assessmentItemID", "testId", "KnowledgeTag"]].dropna()
    if df.empty:
        raise ValueError("no rows with assessmentItemID, testId and KnowledgeTag: cannot build a bank")

    def mode(col: str) -> pd.Series:
        counts = df.groupby(["assessmentItemID", col]).size().reset_index(name="n")
        counts = counts.sort_values(["assessmentItemID", "n", col], ascending=[True, False, True])
        return counts.drop_duplicates("assessmentItemID").set_index("assessmentItemID")[col]

    test_of, tag_of = mode("testId"), mode("KnowledgeTag")
    freq = df.groupby("assessmentItemID").size()
    table = pd.DataFrame({"test": test_of, "tag": tag_of, "n": freq}).rename_axis("item").reset_index()
    table = table.sort_values(["test", "n", "item"], ascending=[True, False, True])
    table = table.groupby("test", sort=True).head(max_items_per_test)

    items: dict[str, Item] = {}
    tests: dict[str, list[str]] = {}
    for row in table.itertuples(index=False):
        text = f"Question {row.item} (test {row.test}, skill {row.tag}). {NO_TEXT}; choose A-D."
        items[row.item] = Item(row.item, row.test, row.tag, text, answer_for(row.item, secret))
        tests.setdefault(row.test, []).append(row.item)
    return QuestionBank(items, tests, source=source)


def with_generated_content(bank: QuestionBank) -> QuestionBank:
    """The same items, tests and answer key with generated questions (``content.generate_question``): real
    text, four choices (the right value at the item's secret key letter), an explanation; skill names per
    tag; test names, subjects (the family of the test's most common skill) and grades (from the test id)."""
    from collections import Counter

    from dkt_core.webclient.content import family_of, generate_question, grade_of, skill_name

    items = {}
    for i in bank.items.values():
        text, choices, explanation = generate_question(i.item_id, i.tag, i.answer)
        items[i.item_id] = Item(i.item_id, i.test_id, i.tag, text, i.answer, choices, explanation)
    info = {}
    for t, ids in bank.tests.items():
        tag = Counter(items[i].tag for i in ids).most_common(1)[0][0]
        subject, grade = family_of(tag)[0].subject, grade_of(t)
        unit = t[-3:].lstrip("0") if grade is not None else t
        info[t] = QuizInfo(f"{subject}{f', grade {grade}' if grade else ''} · unit {unit}", subject, grade)
    names = {i.tag: skill_name(i.tag) for i in items.values()}
    return QuestionBank(items, bank.tests, bank.source, names, info)


def bank_from_content(rows, source: str = "") -> QuestionBank:
    """A bank from validated import rows (``content.read_content_file``); the key is the file's answers
    (stored in the bank, which is 0600 and never sent to a page)."""
    items: dict[str, Item] = {}
    tests: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    info: dict[str, QuizInfo] = {}
    for r in rows:
        items[r.item_id] = Item(r.item_id, r.test, r.tag, r.text, r.answer, r.choices, r.explanation)
        tests.setdefault(r.test, []).append(r.item_id)
        names[r.tag] = r.tag_name
        info[r.test] = QuizInfo(r.test_name, r.subject, r.grade)
    if not items:
        raise ValueError("no valid item to import: fix the rows listed above")
    return QuestionBank(items, tests, source, names, info)
