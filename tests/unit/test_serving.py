"""Serving engine on a real tiny LightGBM artifact: equivalence with `dkt predict`, duplicates, window
truncation, independence of students, knowledge state, readiness of the background loader, and the
BentoML service class called in-process against a private model store."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dkt_core.api import Interaction, StudentRequest, Target
from dkt_core.data.simulate import SimulationConfig, simulate, write_log
from dkt_core.data.validate import to_seed_csv
from dkt_core.predict.evaluate import predict_file
from dkt_core.serving import InferenceEngine, ModelLoader, build_frame
from dkt_core.serving.engine import typical_item
from dkt_core.training.config import TrainConfig
from dkt_core.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
FMT = "%Y-%m-%d %H:%M:%S"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    log = simulate(SimulationConfig(users=30, seed=3))
    write_log(log, str(root / "log.csv.gz"))
    art = train(root / "log.csv.gz", root / "art",
                TrainConfig(models=["lgbm"], model_options={"lgbm": {"num_boost_round": 15}}), progress=False)
    counts = log["userID"].value_counts()
    return art, log[log["userID"].isin(counts[counts >= 70].index)]  # users with enough rows for the cases


@pytest.fixture(scope="module")
def engine(tiny):
    return InferenceEngine.from_artifact(tiny[0])


def _row(r) -> dict:
    return {"assessmentItemID": r.assessmentItemID, "testId": r.testId, "KnowledgeTag": r.KnowledgeTag,
            "Timestamp": r.Timestamp.strftime(FMT)}


def _student(user: str, hist: pd.DataFrame, targets: pd.DataFrame) -> StudentRequest:
    return StudentRequest(userID=user, history=[Interaction(**_row(r), answerCode=int(r.answerCode))
                                                for r in hist.itertuples()],
                          targets=[Target(**_row(r)) for r in targets.itertuples()])


def _dkt_predict(artifact, frame: pd.DataFrame, tmp_path) -> np.ndarray:
    to_seed_csv(frame.assign(answerCode=frame["answerCode"].astype(int)), tmp_path / "in.csv")
    predict_file(artifact, tmp_path / "in.csv", tmp_path / "out.csv")
    return pd.read_csv(tmp_path / "out.csv")["prediction"].to_numpy()


def test_predictions_equal_dkt_predict(tiny, engine, tmp_path):
    artifact, log = tiny
    students, rows = [], []
    for user in log["userID"].unique()[:4]:
        g = log[log["userID"] == user].head(40)
        hist, tg = g.iloc[:35], g.iloc[35:38]
        students.append(_student(user, hist, tg))
        rows.append(pd.concat([hist, tg.assign(answerCode=-1)]))
    served = [p for r in engine.predict(students).results for p in r.probabilities]
    np.testing.assert_allclose(served, _dkt_predict(artifact, pd.concat(rows), tmp_path), atol=1e-6)


def test_frame_is_typed_sorted_and_deduplicated_like_validation(engine, tiny):
    log = tiny[1]
    g = log[log["userID"] == log["userID"].iloc[0]].head(6)
    hist = pd.concat([g.iloc[[3, 0, 1]], g.iloc[[1]]])  # out of order + an exact duplicate
    s = _student(" u ", hist, g.iloc[[4, 4]])  # the same target twice
    rf = build_frame([s])
    assert list(rf.frame["Timestamp"]) == sorted(rf.frame["Timestamp"])
    assert len(rf.frame) == 4  # 3 distinct history rows + 1 distinct target
    assert rf.frame["answerCode"].dtype == np.int8 and str(rf.frame["Timestamp"].dtype) == "datetime64[ns]"
    assert rf.target_rows[0] == rf.target_rows[1]
    p = engine.predict([s]).results[0].probabilities
    assert p[0] == p[1]


def test_students_are_independent_and_results_deterministic(engine, tiny):
    log = tiny[1]
    users = log["userID"].unique()[:2]
    a = _student("same", log[log["userID"] == users[0]].head(20), log[log["userID"] == users[0]].iloc[[20]])
    b = _student("same", log[log["userID"] == users[1]].head(20), log[log["userID"] == users[1]].iloc[[20]])
    together = engine.predict([a, b])
    assert together.results[0].probabilities == engine.predict([a]).results[0].probabilities
    assert together.results[1].probabilities == engine.predict([b]).results[0].probabilities
    assert engine.predict([a, b]) == together


def test_long_history_is_truncated_to_the_window(tiny):
    artifact, log = tiny
    user = log["userID"].value_counts().index[0]
    g = log[log["userID"] == user].head(61)
    small = InferenceEngine.from_artifact(artifact, window=50)
    full = _student("u", g.iloc[:60], g.iloc[[60]])
    last = _student("u", g.iloc[10:60], g.iloc[[60]])
    assert build_frame([full], window=50).truncated == 10
    assert small.predict([full]) == small.predict([last])
    assert small.predict([full]) != InferenceEngine.from_artifact(artifact).predict([full])


def test_unknown_ids_are_predicted(engine):
    row = {"assessmentItemID": "never-seen", "testId": "nope", "KnowledgeTag": "zzz", "Timestamp": "2021-01-01 00:00:00"}
    s = StudentRequest(userID="new", history=[Interaction(**row, answerCode=1)], targets=[Target(**row)])
    p = engine.predict([s]).results[0].probabilities[0]
    assert 0.0 < p < 1.0


def test_knowledge_state_scores_every_tag_of_the_history(engine, tiny):
    log = tiny[1]
    g = log[log["userID"] == log["userID"].iloc[0]].head(30)
    s = _student("u", g, g.loc[[g["Timestamp"].idxmax()]])  # a target may not precede its history
    ks = engine.knowledge_state("u", s.history)
    assert set(ks.tags) == set(g["KnowledgeTag"])
    assert all(0.0 < v < 1.0 for v in ks.tags.values())
    assert ks.model_version == engine.model_version
    assert engine.knowledge_state("u", list(reversed(s.history))) == ks  # order of the request is irrelevant
    with pytest.raises(ValueError, match="at least one"):
        engine.knowledge_state("u", [])


def test_knowledge_state_counts_attempts_and_flags_unseen_tags(engine, tiny):
    """issue 13 item 6: attempts and correct answers per tag over the whole history sent, and a tag the
    model never saw in training (outside its tag encoder's vocabulary) flagged."""
    log = tiny[1]
    g = log[log["userID"] == log["userID"].iloc[0]].head(20)
    s = _student("u", g, g.loc[[g["Timestamp"].idxmax()]])
    last = s.history[-1]
    new_tag = "tag-never-trained"
    assert new_tag not in set(log["KnowledgeTag"])
    history = [*s.history, Interaction(**{**last, "KnowledgeTag": new_tag, "answerCode": 0}),
               Interaction(**{**last, "KnowledgeTag": new_tag, "answerCode": 1})]
    ks = engine.knowledge_state("u", history)
    states = {t.tag: t for t in ks.tag_states}
    assert list(states) == sorted(states) and set(states) == set(ks.tags)
    expected = g.groupby("KnowledgeTag")["answerCode"].agg(["size", "sum"])
    for tag, row in expected.iterrows():
        assert (states[tag].attempts, states[tag].correct) == (row["size"], row["sum"]), tag
        assert states[tag].seen_in_training and states[tag].mastery == ks.tags[tag]
    assert (states[new_tag].attempts, states[new_tag].correct, states[new_tag].seen_in_training) == (2, 1, False)
    assert ks.unseen_tags == [new_tag]


def test_typical_item():
    assert typical_item("A060001007") == "A060001000"
    assert typical_item("12345") == "12345#typical"


def test_loader_is_ready_only_after_load(engine):
    gate = threading.Event()

    def load():
        gate.wait(10)
        return engine

    loader = ModelLoader(load).start()
    assert not loader.ready
    gate.set()
    assert loader.wait(30) and loader.engine is engine

    def broken():
        raise FileNotFoundError("no artifact")

    failed = ModelLoader(broken).start()
    assert not failed.wait(10) and "no artifact" in failed.error


def test_service_class_in_process(tiny, tmp_path, monkeypatch):
    """bento_service.DKTService called directly, its model resolved from a private store."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml.exceptions import ServiceUnavailable

    from dkt_core.packaging import model_store, package_artifact

    home = tmp_path / "bentoml"
    tag = package_artifact(tiny[0], home).tag
    BentoMLContainer.model_store.set(model_store(home))  # an override; reset() below restores the default
    monkeypatch.setenv("DKT_MODEL_TAG", tag)
    monkeypatch.syspath_prepend(str(REPO / "bento_service"))
    sys.modules.pop("service", None)
    try:
        import service

        svc = service.DKTService()
        assert svc.loader.wait(60), svc.loader.error
        assert svc.__is_ready__()
        assert svc.version().model_version == tag.split(":")[1]
        log = tiny[1]
        g = log[log["userID"] == log["userID"].iloc[0]].head(11)
        s = _student("u", g.iloc[:10], g.iloc[[10]])
        assert svc.predict([s]) == InferenceEngine.from_artifact(tiny[0]).predict([s])
        batched = svc.predict_batched([s, s])
        assert batched[0].probabilities == svc.predict([s]).results[0].probabilities
        assert batched[0].model_version == svc.version().model_version
        svc.loader.engine = None  # as before the load finished
        assert not svc.__is_ready__()
        with pytest.raises(ServiceUnavailable, match="loading"):
            svc.predict([s])
    finally:
        BentoMLContainer.model_store.reset()
        sys.modules.pop("service", None)


def test_serving_load_generator_refuses_non_loopback_targets():
    from devtools.loadgen import run_load

    with pytest.raises(ValueError, match="not loopback"):
        run_load("http://192.0.2.1:3000/predict", b"{}", clients=1, duration_s=1)
