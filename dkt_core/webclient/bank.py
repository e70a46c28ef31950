"""Question bank: the training data's items (id, test, tag) with placeholder text and an answer key.

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
from dkt_core.private_files import ensure_private, read_or_create_secret, write_private
from dkt_core.webclient.settings import ClientSettings

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


def default_answer_secret() -> bytes:
    """The answer-key secret of this installation (``DKT_CLIENT_ANSWER_KEY_FILE``; created when absent)."""
    return read_or_create_secret(ClientSettings.from_env().answer_key_path, what="answer-key secret")


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
            "answer_key": KEY_SCHEME,
            "source": self.source,
            "tests": self.tests,
            "items": {
                i.item_id: {"test": i.test_id, "tag": i.tag, "text": i.text, "answer": i.answer}
                for i in self.items.values()
            },
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


def build_bank(df: pd.DataFrame, *, answer_secret: bytes | None = None, max_items_per_test: int = 10,
               source: str = "") -> QuestionBank:
    """Bank from seed rows: each item's test and tag are its most frequent ones (ties: smallest value);
    each test keeps its ``max_items_per_test`` most answered items (ties: item id), in that order. The key
    is ``answer_for(item, answer_secret)``; without a secret, this installation's (``default_answer_secret``)."""
    secret = answer_secret if answer_secret is not None else default_answer_secret()
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
        items[row.item] = Item(row.item, row.test, row.tag, text, answer_for(row.item, secret))
        tests.setdefault(row.test, []).append(row.item)
    return QuestionBank(items, tests, source=source)
