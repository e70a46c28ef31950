"""Question bank: the training data's items (id, test, tag) with placeholder text and an answer key.

The answer key is derived from the item id alone (a hash), so rebuilding the bank from any slice of the
data gives every item the same correct choice, and grading never depends on build order or randomness.
The bank is a JSON file the app loads at start; the key never leaves the server.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CHOICES = ("A", "B", "C", "D")
SEED_COLUMNS = ["userID", "assessmentItemID", "testId", "answerCode", "Timestamp", "KnowledgeTag"]
BANK_FORMAT = 1


def answer_for(item_id: str) -> str:
    """The correct choice of ``item_id``: deterministic from the id (stable across builds and hosts)."""
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return CHOICES[digest[0] % len(CHOICES)]


@dataclass(frozen=True)
class Item:
    item_id: str
    test_id: str
    tag: str
    text: str
    answer: str


class QuestionBank:
    """Items grouped by test, in quiz order; grading against the answer key."""

    def __init__(self, items: dict[str, Item], tests: dict[str, list[str]], source: str = ""):
        missing = [i for ids in tests.values() for i in ids if i not in items]
        if missing:
            raise ValueError(f"bank lists tests with unknown items, e.g. {missing[:3]}: rebuild the bank")
        self.items = items
        self.tests = tests
        self.source = source

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
            "source": self.source,
            "tests": self.tests,
            "items": {
                i.item_id: {"test": i.test_id, "tag": i.tag, "text": i.text, "answer": i.answer}
                for i in self.items.values()
            },
        }

    def save(self, path: Path) -> None:
        """Write atomically (tmp + rename) so a running client never reads half a bank."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> QuestionBank:
        if not path.exists():
            raise FileNotFoundError(
                f"question bank {path} does not exist: build it with "
                f"`python -m dkt_core.webclient build-bank --data SEED.csv --out {path}`"
            )
        raw = json.loads(path.read_text())
        if raw.get("format") != BANK_FORMAT:
            raise ValueError(f"{path} has bank format {raw.get('format')!r}, expected {BANK_FORMAT}: rebuild it")
        items = {
            k: Item(item_id=k, test_id=v["test"], tag=v["tag"], text=v["text"], answer=v["answer"])
            for k, v in raw["items"].items()
        }
        return cls(items, {t: list(ids) for t, ids in raw["tests"].items()}, raw.get("source", ""))


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


def build_bank(df: pd.DataFrame, *, max_items_per_test: int = 10, source: str = "") -> QuestionBank:
    """Bank from seed rows: each item's test and tag are its most frequent ones (ties: smallest value);
    each test keeps its ``max_items_per_test`` most answered items (ties: item id), in that order."""
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
        text = f"Question {row.item} (test {row.test}, skill {row.tag}). Item text is not available; choose A-D."
        items[row.item] = Item(row.item, row.test, row.tag, text, answer_for(row.item))
        tests.setdefault(row.test, []).append(row.item)
    return QuestionBank(items, tests, source=source)
