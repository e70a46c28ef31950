"""Question bank: building from seed rows, the secret (HMAC) answer key, grading, persistence (0600)."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pandas as pd
import pytest

from dkt_core.webclient.bank import CHOICES, QuestionBank, answer_for, build_bank, read_seed

SECRET = b"unit-test answer-key secret 0123456789"


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
    bank = build_bank(_rows(), answer_secret=SECRET, max_items_per_test=2)
    assert bank.tests == {"T1": ["i1", "i2"], "T2": ["i9"]}
    assert bank.items["i9"].tag == "k2"  # the item's most frequent tag
    assert set(bank.items) == {"i1", "i2", "i9"}
    assert "i1" in bank.items["i1"].text and "T1" in bank.items["i1"].text


def test_answer_key_is_deterministic_and_uses_every_choice():
    assert answer_for("A060001001", SECRET) == answer_for("A060001001", SECRET)
    keys = [answer_for(f"item{i}", SECRET) for i in range(400)]
    assert set(keys) == set(CHOICES)
    assert max(keys.count(c) for c in CHOICES) < 150  # roughly balanced, not one constant answer
    a = build_bank(_rows(), answer_secret=SECRET)
    b = build_bank(_rows().iloc[::-1], answer_secret=SECRET)  # order of the data does not change the key
    assert {k: v.answer for k, v in a.items.items()} == {k: v.answer for k, v in b.items.items()}


def _public_key(item_id: str) -> str:
    """The old, public derivation (issue 12): anyone could compute it from the item id."""
    return CHOICES[hashlib.sha256(item_id.encode()).digest()[0] % len(CHOICES)]


def test_answer_key_cannot_be_computed_from_the_item_id():
    ids = [f"A{n:09d}" for n in range(400)]
    ours = [answer_for(i, SECRET) for i in ids]
    other = [answer_for(i, b"another installation's secret 0123") for i in ids]
    # without the secret, the public derivation (or another secret) agrees only by chance (~1 in 4)
    for guess in ([_public_key(i) for i in ids], other):
        agree = sum(a == b for a, b in zip(ours, guess, strict=True))
        assert 50 < agree < 150, agree
    with pytest.raises(ValueError, match="at least 16 bytes"):
        answer_for("i1", b"short")


def test_format_1_bank_with_the_public_key_is_refused(tmp_path):
    path = tmp_path / "bank.json"
    path.write_text(json.dumps({"format": 1, "tests": {}, "items": {}}))
    with pytest.raises(ValueError, match="answer key is public.*rebuild it"):
        QuestionBank.load(path)


def test_grade_against_the_key():
    bank = build_bank(_rows(), answer_secret=SECRET)
    right = bank.items["i1"].answer
    wrong = next(c for c in CHOICES if c != right)
    assert bank.grade("i1", right) == 1
    assert bank.grade("i1", wrong) == 0
    with pytest.raises(KeyError, match="not in the question bank"):
        bank.grade("nope", right)
    with pytest.raises(ValueError, match="must be one of"):
        bank.grade("i1", "E")


def test_save_load_roundtrip_and_helpful_errors(tmp_path):
    bank = build_bank(_rows(), answer_secret=SECRET, source="x.csv")
    bank.save(tmp_path / "b" / "bank.json")
    assert stat.S_IMODE(os.stat(tmp_path / "b" / "bank.json").st_mode) == 0o600  # it holds the answer key
    again = QuestionBank.load(tmp_path / "b" / "bank.json")
    assert again.tests == bank.tests and again.items == bank.items and again.source == "x.csv"
    os.chmod(tmp_path / "b" / "bank.json", 0o644)  # e.g. written by an older version
    QuestionBank.load(tmp_path / "b" / "bank.json")
    assert stat.S_IMODE(os.stat(tmp_path / "b" / "bank.json").st_mode) == 0o600
    with pytest.raises(FileNotFoundError, match="build-bank"):
        QuestionBank.load(tmp_path / "missing.json")


@pytest.mark.parametrize("suffix", [".csv.gz", ".parquet"])
def test_read_seed_csv_and_parquet(tmp_path, suffix):
    path = tmp_path / f"seed{suffix}"
    df = _rows()
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    bank = build_bank(read_seed(path), answer_secret=SECRET)
    assert bank.tests["T2"] == ["i9"]


def test_read_seed_rejects_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    _rows().drop(columns=["KnowledgeTag"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lacks seed columns"):
        read_seed(path)


def test_cli_build_bank(tmp_path, capsys, monkeypatch):
    from dkt_core.webclient.__main__ import main

    secret_file = tmp_path / "keys" / "answer_key.secret"
    monkeypatch.setenv("DKT_CLIENT_ANSWER_KEY_FILE", str(secret_file))
    _rows().to_csv(tmp_path / "seed.csv", index=False)
    assert main(["build-bank", "--data", str(tmp_path / "seed.csv"), "--out", str(tmp_path / "bank.json")]) == 0
    assert "4 items in 2 tests" in capsys.readouterr().out
    bank = QuestionBank.load(tmp_path / "bank.json")
    assert bank.tests["T1"] == ["i1", "i2", "i3"]
    # the secret was created 0600 and is what the key derives from; a rebuild reuses it: same key
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    secret = secret_file.read_bytes().strip()
    assert all(it.answer == answer_for(i, secret) for i, it in bank.items.items())
    assert main(["build-bank", "--data", str(tmp_path / "seed.csv"), "--out", str(tmp_path / "again.json")]) == 0
    assert QuestionBank.load(tmp_path / "again.json").items == bank.items


# --- content (issue 13): generated questions and the import format -------------------------------------------
def test_generated_content_is_real_deterministic_and_keeps_the_secret_key():
    from dkt_core.data.simulate import SimulationConfig, simulate
    from dkt_core.webclient.bank import with_generated_content

    df = simulate(SimulationConfig(users=20, seed=3, tests=40, tags=30))
    plain = build_bank(df, answer_secret=SECRET)
    bank = with_generated_content(plain)
    again = with_generated_content(build_bank(df.iloc[::-1], answer_secret=SECRET))
    assert bank.items == again.items  # deterministic from the item id (and the key)
    for item in bank.items.values():
        assert item.has_content and len(set(item.choices)) == 4 and item.explanation
        assert "not available" not in item.text and item.answer == plain.items[item.item_id].answer
        right = item.choices[CHOICES.index(item.answer)]
        assert right in item.explanation  # the explanation ends at the right value
    assert all("·" in bank.tag_name(i.tag) for i in bank.items.values())  # named skills
    groups = bank.groups()
    assert {g for _, g, _ in groups} <= set(range(1, 10)) and sum(len(ts) for *_, ts in groups) == len(bank.tests)
    other = with_generated_content(build_bank(df, answer_secret=b"another secret 0123456789abcdef"))
    moved = sum(a.choices != b.choices for a, b in zip(bank.items.values(), other.items.values(), strict=True))
    assert moved > len(bank.items) // 2  # the right value sits at the secret key's letter
    loaded = QuestionBank.load(_saved(bank))
    assert loaded.items == bank.items and loaded.test_info == bank.test_info and loaded.tag_names == bank.tag_names


def _saved(bank, path=None):
    import tempfile
    from pathlib import Path

    path = path or Path(tempfile.mkdtemp()) / "bank.json"
    bank.save(path)
    return path


IMPORT_HEADER = "item_id,text,choice_a,choice_b,choice_c,choice_d,answer,explanation,tag,tag_name,test,subject,grade\n"


def test_cli_import_a_bank_with_per_row_errors(tmp_path, capsys):
    from dkt_core.webclient.__main__ import main

    good = 'q1,What is 2 + 2?,3,4,5,6,B,2 + 2 = 4.,t1,Addition,T1,Arithmetic,1\n' \
           'q2,"What is 3 × 3?",9,6,12,8,a,3 × 3 = 9.,t2,Multiplication,T1,Arithmetic,1\n'
    bad = ('q3,Broken,1,2,3,4,E,,t1,Addition,T1,Arithmetic,1\n'  # answer not A-D
           'q1,Again,1,2,3,4,A,,t1,Addition,T1,Arithmetic,1\n'  # duplicate id
           'q4,Same choices,1,1,3,4,A,,t1,Addition,T1,Arithmetic,1\n'
           'q5,Renamed,1,2,3,4,A,,t1,Sums,T1,Arithmetic,1\n'  # contradicts the tag name of row 1
           'bad id!,Text,1,2,3,4,A,,t1,Addition,T1,Arithmetic,1\n'
           'q6,,1,2,3,4,A,,t1,Addition,T1,Arithmetic,1\n')
    path = tmp_path / "bank.csv"
    path.write_text(IMPORT_HEADER + good + bad)
    assert main(["build-bank", "--import", str(path), "--out", str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr()
    for reason in ("row 3 (item q3): answer 'E' must be one of A, B, C, D", "row 4 (item q1): item_id q1 appears",
                   "row 5 (item q4): two choices are the same", "row 6 (item q5): tag t1 is named 'Sums'",
                   "row 7 (item bad id!): item_id 'bad id!' must be", "row 8 (item q6): text is empty"):
        assert reason in out.err, out.err
    assert "2 items in 1 tests; 6 row(s) rejected" in out.out
    bank = QuestionBank.load(tmp_path / "b.json")
    assert bank.items["q2"].answer == "A" and bank.grade("q1", "B") == 1 and bank.tag_name("t2") == "Multiplication"
    assert bank.info("T1").subject == "Arithmetic" and bank.info("T1").grade == 1
    # JSON, with a choices list; a clean file exits 0
    (tmp_path / "bank.json").write_text(json.dumps([{"item_id": "j1", "text": "2 × 5?", "choices": ["10", "7", "25", "3"],
                                                     "answer": "A", "tag": "t", "test": "T"}]))
    assert main(["build-bank", "--import", str(tmp_path / "bank.json"), "--out", str(tmp_path / "j.json")]) == 0
    assert QuestionBank.load(tmp_path / "j.json").items["j1"].choices[0] == "10"
    (tmp_path / "x.csv").write_text("id,question\n1,2\n")
    assert main(["build-bank", "--import", str(tmp_path / "x.csv")]) == 2
    assert "the header lacks item_id, text, answer, tag, test" in capsys.readouterr().err


def test_items_without_content_are_labelled():
    bank = build_bank(_rows(), answer_secret=SECRET)
    assert all("Item text is not available" in i.text and not i.has_content for i in bank.items.values())
