"""The `dkt` console script, run as a real subprocess: exit codes, JSON output, clear errors."""

from __future__ import annotations

import json
import re
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


def _commands() -> dict[str, list[str]]:
    """Every command path (e.g. ['api-key', 'create']) from the real parser."""
    import argparse

    from dkt_core.cli import build_parser

    out: dict[str, list[str]] = {}

    def walk(path: list[str], parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    out[" ".join([*path, name])] = [*path, name]
                    walk([*path, name], child)

    walk([], build_parser())
    return out


def test_every_command_has_a_description_and_every_option_help_with_its_default():
    """`dkt X --help` through the console script: a description, help on every option, defaults shown."""
    import argparse

    from dkt_core.cli import build_parser

    commands = _commands()
    assert {"train", "evaluate", "predict", "validate", "simulate", "seed", "api-key create"} <= set(commands)
    parser = build_parser()
    for words in commands.values():
        node = parser
        for word in words:
            node = next(a for a in node._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
        assert node.description, f"dkt {' '.join(words)} has no description"
        for action in node._actions:
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                assert action.help, f"dkt {' '.join(words)} {action.option_strings or action.dest} has no help"
    r = run("train", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())  # argparse wraps lines
    assert "--valid-frac VALID_FRAC fraction of users held out" in text and "(default: 0.2)" in text
    assert "(default: lgbm)" in text and "--force" in text and "(default: None)" not in text
    assert "(default: 100)" in " ".join(run("evaluate", "--help").stdout.split())


def test_train_refuses_an_existing_artifact_without_force(tiny_log_csv, tmp_path):
    out = tmp_path / "art"
    args = ("train", "--data", str(tiny_log_csv), "--models", "lgbm", "--out", str(out),
            "--option", "lgbm.num_boost_round=5", "--quiet")
    assert run(*args).returncode == 0
    before = (out / "manifest.json").read_text()
    r = run(*args)
    assert r.returncode == 2 and "already holds a trained artifact" in r.stderr and "--force" in r.stderr
    assert (out / "manifest.json").read_text() == before  # untouched
    (out / "stale.txt").write_text("from the old artifact")
    r = run(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").read_text() != before and not (out / "stale.txt").exists()
    # --force never deletes a directory the trainer did not write
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    r = run("train", "--data", str(tiny_log_csv), "--out", str(other), "--force", "--quiet")
    assert r.returncode == 2 and "not an artifact directory" in r.stderr and (other / "keep.txt").exists()


def test_evaluate_warns_on_the_training_file_and_on_shared_users(tmp_path):
    import pandas as pd

    log, unseen = tmp_path / "log.csv", tmp_path / "unseen.csv"
    assert run("simulate", "--users", "40", "--seed", "1", "--out", str(log)).returncode == 0
    assert run("simulate", "--users", "12", "--seed", "2", "--out", str(unseen)).returncode == 0
    frame = pd.read_csv(unseen)
    frame["userID"] = "new-" + frame["userID"].astype(str)  # the simulator numbers users from 0: rename them
    frame.to_csv(unseen, index=False)
    assert run("train", "--data", str(log), "--models", "lgbm", "--out", str(tmp_path / "art"),
               "--option", "lgbm.num_boost_round=10", "--quiet").returncode == 0

    r = run("evaluate", "--model", str(tmp_path / "art"), "--data", str(log), "--json", "--bootstrap", "5")
    assert r.returncode == 0, r.stderr
    warnings = json.loads(r.stdout)["warnings"]
    assert any("is the file this model was trained on" in w for w in warnings), warnings
    assert any("40 of the 40 users" in w for w in warnings), warnings
    assert "warning:" in r.stderr and "trained on" in r.stderr

    mixed = tmp_path / "mixed.csv"
    old = pd.read_csv(log)
    pd.concat([frame, old[old["userID"].isin(sorted(old["userID"].unique())[:3])]]).to_csv(mixed, index=False)
    r = run("evaluate", "--model", str(tmp_path / "art"), "--data", str(mixed), "--json", "--bootstrap", "5")
    assert json.loads(r.stdout)["warnings"] == [
        f"3 of the 15 users in {mixed} (20%) were in the training data: their scores overstate the model on "
        "new students"]

    r = run("evaluate", "--model", str(tmp_path / "art"), "--data", str(unseen), "--bootstrap", "5")
    assert r.returncode == 0 and "warning" not in r.stderr
    # for people: four decimals; --json keeps full precision
    assert re.search(r"ensemble: auc_all=0\.\d{4} auc_last=\S+ acc_last=\S+ on 12 users, \d+ rows \(95% CI of "
                     r"auc_all: 0\.\d{4} to [01]\.\d{4}\)", r.stdout), r.stdout
    full = json.loads(run("evaluate", "--model", str(tmp_path / "art"), "--data", str(unseen), "--json",
                          "--bootstrap", "5").stdout)
    assert full["warnings"] == [] and len(repr(full["auc_all"])) > 6


def test_predict_output_keeps_the_input_line_and_timestamp_of_repeated_items(tmp_path):
    import pandas as pd

    log = tmp_path / "log.csv"
    assert run("simulate", "--users", "30", "--seed", "3", "--out", str(log)).returncode == 0
    assert run("train", "--data", str(log), "--models", "lgbm", "--out", str(tmp_path / "art"),
               "--option", "lgbm.num_boost_round=10", "--quiet").returncode == 0
    rows = ["userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag",
            "s1,A010001001,A010000001,1,2020-03-01 10:00:00,7",
            "s1,A010001002,A010000001,-1,2020-03-01 10:01:00,7",
            "s1,A010001001,A010000001,-1,2020-03-01 10:02:00,7",  # the same item again, later
            "s1,A010001001,A010000001,-1,2020-03-01 10:03:00,7"]
    data = tmp_path / "ask.csv"
    data.write_text("\n".join(rows) + "\n")
    r = run("predict", "--model", str(tmp_path / "art"), "--data", str(data), "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    pred = pd.read_csv(tmp_path / "p.csv", dtype={"line": int})
    assert list(pred.columns) == ["line", "userID", "assessmentItemID", "Timestamp", "prediction"]
    assert pred[["line", "assessmentItemID", "Timestamp"]].values.tolist() == [
        [3, "A010001002", "2020-03-01 10:01:00"], [4, "A010001001", "2020-03-01 10:02:00"],
        [5, "A010001001", "2020-03-01 10:03:00"]]


def test_train_logs_one_summary_line_per_epoch(tiny_log_csv, tmp_path):
    r = run("train", "--data", str(tiny_log_csv), "--models", "lstm", "--out", str(tmp_path / "art"),
            "--option", "lstm.max_epochs=2", "--option", "lstm.hidden=8", "--option", "lstm.patience=5")
    assert r.returncode == 0, r.stderr
    lines = re.findall(r"lstm epoch (\d)/2: train loss \d+\.\d{4}, valid AUC (?:\d\.\d{4}|nan)", r.stderr)
    assert lines == ["1", "2"], r.stderr[-3000:]


def test_make_help_shows_values_not_variable_names():
    make = shutil.which("make")
    if not make:
        pytest.skip("make is not installed")
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([make, "-s", "help"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "$(" not in r.stdout and "help" in r.stdout
