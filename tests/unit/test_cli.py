"""The `dkt` console script, run as a real subprocess: exit codes, JSON output, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DKT = shutil.which("dkt", path=str(Path(sys.executable).parent))


def run(*args: str) -> subprocess.CompletedProcess:
    assert DKT, "the dkt console script is not installed in this venv (run make setup)"
    return subprocess.run([DKT, *args], capture_output=True, text=True, timeout=300)


def test_validate_exit_codes_and_json(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag\n"
                    "1,A060001001,A060000001,1,2020-01-01 00:00:00,7\n")
    r = run("validate", str(good), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {k: summary[k] for k in ("rows_read", "valid", "rejected", "duplicates")} == {
        "rows_read": 1, "valid": 1, "rejected": 0, "duplicates": 0}

    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text() + "1,A060001002,A060000001,7,2020-01-01 00:00:01,7\n1,A0\n")
    r = run("validate", str(bad), "--json", "--quarantine", str(tmp_path / "q"))
    assert r.returncode == 1
    summary = json.loads(r.stdout)
    assert summary["reasons"] == {"bad answerCode": 1, "wrong field count": 1}
    assert (tmp_path / "q" / "rejected.csv").exists() and (tmp_path / "q" / "valid.csv").exists()


@pytest.mark.parametrize("content", [b"", b"no,header,here\n1,2,3\n", b"\x00\x01binary"])
def test_validate_unusable_file_exit_2_one_sentence_no_traceback(tmp_path, content):
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    r = run("validate", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and str(path) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_file_and_bad_option_are_clear(tmp_path):
    r = run("validate", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "cannot be read" in r.stderr and "Traceback" not in r.stderr
    r = run("train", "--data", str(tmp_path / "x.csv"), "--models", "nope", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "unknown model" in r.stderr


def test_simulate_train_evaluate_predict(tmp_path):
    log, other = tmp_path / "log.csv.gz", tmp_path / "other.parquet"
    assert run("simulate", "--users", "60", "--seed", "1", "--out", str(log)).returncode == 0
    assert run("simulate", "--users", "15", "--seed", "2", "--out", str(other)).returncode == 0
    r = run("train", "--data", str(log), "--models", "lgbm", "--out", str(tmp_path / "art"), "--seed", "1",
            "--option", "lgbm.num_boost_round=40", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "lgbm" in r.stderr  # progress is shown while it runs
    r = run("evaluate", "--model", str(tmp_path / "art"), "--data", str(other), "--json", "--bootstrap", "10")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n_users"] == 15 and {"auc_last", "acc_last", "auc_all"} <= set(report)

    import pandas as pd

    frame = pd.read_parquet(other)
    last = frame.groupby("userID").tail(1).index
    frame.loc[last, "answerCode"] = -1
    frame.to_parquet(other)
    r = run("predict", "--model", str(tmp_path / "art"), "--data", str(other), "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 15 and pred["prediction"].between(0, 1).all()


def test_train_evaluate_predict_read_within_the_configured_caps(tiny_log_csv, tmp_path, monkeypatch, capsys):
    """The size caps apply to every file the CLI reads, and they are the configured ones (so an operator
    can raise them for a large training log): a cap below the file's size refuses it, naming the setting."""
    from dkt_core.cli import main

    model = tmp_path / "a"
    assert main(["train", "--data", str(tiny_log_csv), "--models", "lgbm", "--out", str(model),
                 "--option", "lgbm.num_boost_round=5", "--quiet"]) == 0
    monkeypatch.setenv("DKT_INGEST_MAX_OBJECT_BYTES", "1000")
    capsys.readouterr()
    for argv in (["train", "--data", str(tiny_log_csv), "--models", "lgbm", "--out", str(tmp_path / "b")],
                 ["evaluate", "--model", str(model), "--data", str(tiny_log_csv)],
                 ["predict", "--model", str(model), "--data", str(tiny_log_csv), "--out", str(tmp_path / "p.csv")]):
        assert main(argv) == 2
        assert "DKT_INGEST_MAX_OBJECT_BYTES" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "p.csv").exists()
