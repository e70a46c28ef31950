"""Question bank: building from seed rows, the deterministic answer key, grading, persistence."""

from __future__ import annotations

import pandas as pd
import pytest

from dkt_core.webclient.bank import CHOICES, QuestionBank, answer_for, build_bank, read_seed


def _rows() -> pd.DataFrame:
    # item i1 appears most in T1; i9 is mostly tagged "k2" but once "k1"; T2 has a single item.
    rows = [("u1", "i1", "T1", 1, "2020-01-01 00:00:00", "k1")] * 5
    rows += [("u1", "i2", "T1", 0, "2020-01-01 00:01:00", "k1")] * 3
    rows += [("u2", "i3", "T1", 1, "2020-01-01 00:02:00", "k1")] * 1
    rows += [("u2", "i9", "T2", 1, "2020-01-01 00:03:00", "k2")] * 2
    rows += [("u3", "i9", "T2", 0, "2020-01-01 00:04:00", "k1")]
    cols = ["userID", "assessmentItemID", "testId", "answerCode", "Timestamp", "KnowledgeTag"]
    return pd.DataFrame(rows, columns=cols)


def test_build_bank_orders_items_by_frequency_and_caps_each_test():
    bank = build_bank(_rows(), max_items_per_test=2)
    assert bank.tests == {"T1": ["i1", "i2"], "T2": ["i9"]}
    assert bank.items["i9"].tag == "k2"  # the item's most frequent tag
    assert set(bank.items) == {"i1", "i2", "i9"}
    assert "i1" in bank.items["i1"].text and "T1" in bank.items["i1"].text


def test_answer_key_is_deterministic_and_uses_every_choice():
    assert answer_for("A060001001") == answer_for("A060001001")
    keys = [answer_for(f"item{i}") for i in range(400)]
    assert set(keys) == set(CHOICES)
    assert max(keys.count(c) for c in CHOICES) < 150  # roughly balanced, not one constant answer
    a = build_bank(_rows())
    b = build_bank(_rows().iloc[::-1])  # order of the data does not change the key
    assert {k: v.answer for k, v in a.items.items()} == {k: v.answer for k, v in b.items.items()}


def test_grade_against_the_key():
    bank = build_bank(_rows())
    right = bank.items["i1"].answer
    wrong = next(c for c in CHOICES if c != right)
    assert bank.grade("i1", right) == 1
    assert bank.grade("i1", wrong) == 0
    with pytest.raises(KeyError, match="not in the question bank"):
        bank.grade("nope", right)
    with pytest.raises(ValueError, match="must be one of"):
        bank.grade("i1", "E")


def test_save_load_roundtrip_and_helpful_errors(tmp_path):
    bank = build_bank(_rows(), source="x.csv")
    bank.save(tmp_path / "b" / "bank.json")
    again = QuestionBank.load(tmp_path / "b" / "bank.json")
    assert again.tests == bank.tests and again.items == bank.items and again.source == "x.csv"
    with pytest.raises(FileNotFoundError, match="build-bank"):
        QuestionBank.load(tmp_path / "missing.json")


@pytest.mark.parametrize("suffix", [".csv.gz", ".parquet"])
def test_read_seed_csv_and_parquet(tmp_path, suffix):
    path = tmp_path / f"seed{suffix}"
    df = _rows()
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    bank = build_bank(read_seed(path))
    assert bank.tests["T2"] == ["i9"]


def test_read_seed_rejects_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    _rows().drop(columns=["KnowledgeTag"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lacks seed columns"):
        read_seed(path)


def test_cli_build_bank(tmp_path, capsys):
    from dkt_core.webclient.__main__ import main

    _rows().to_csv(tmp_path / "seed.csv", index=False)
    assert main(["build-bank", "--data", str(tmp_path / "seed.csv"), "--out", str(tmp_path / "bank.json")]) == 0
    assert "4 items in 2 tests" in capsys.readouterr().out
    assert QuestionBank.load(tmp_path / "bank.json").tests["T1"] == ["i1", "i2", "i3"]
