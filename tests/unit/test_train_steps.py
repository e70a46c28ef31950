"""The training steps (prepare -> train_member per model -> assemble), as the retraining DAG runs them
apart, give the artifact the one-process ``train_frame`` gives: same weights, metrics and predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dkt_core.predict import Predictor
from dkt_core.training.config import TrainConfig
from dkt_core.training.trainer import Member, Prepared, assemble, prepare, train_frame, train_member

OPTIONS = {"lgbm": {"num_boost_round": 40, "num_threads": 1},
           "lstm": {"max_epochs": 1, "hidden": 8, "emb_dim": 4, "num_threads": 1, "device": "cpu"}}


def _config() -> TrainConfig:
    return TrainConfig(models=["lgbm", "lstm"], seed=3, model_options=OPTIONS)


@pytest.fixture(scope="module")
def one_process(tiny_log, tmp_path_factory):
    return train_frame(tiny_log, tmp_path_factory.mktemp("one") / "artifact", _config(), progress=False)


def _strip_seconds(validation: dict) -> dict:
    """Validation metrics without wall-clock times (the only thing allowed to differ)."""
    out = {}
    for name, m in validation.items():
        out[name] = {k: v for k, v in m.items() if k not in ("train_seconds", "history")}
        out[name]["history"] = [{k: v for k, v in e.items() if k != "seconds"} for e in m.get("history", [])]
    return out


def test_steps_apart_in_reverse_order_equal_one_process(one_process, tiny_log, tmp_path):
    # every hand-over goes through disk, as between tasks on different workers
    prepared = Prepared.load(prepare(tiny_log, _config()).save(tmp_path / "prepared"))
    members = []
    for name in reversed(_config().models):  # any order: members do not depend on each other
        member = train_member(name, Prepared.load(tmp_path / "prepared"), progress=False)
        members.append(Member.load(member.save(tmp_path / "members" / name)))
    fanned = assemble(prepared, members, tmp_path / "fanned")

    one, two = (json.loads((a / "metrics.json").read_text()) for a in (one_process, fanned))
    assert set(one["ensemble_weights"]) == {"lgbm", "lstm"}
    assert one["ensemble_weights"] == two["ensemble_weights"]
    assert _strip_seconds(one["validation"]) == _strip_seconds(two["validation"])
    m1, m2 = (json.loads((a / "manifest.json").read_text()) for a in (one_process, fanned))
    assert m1["models"] == m2["models"] == ["lgbm", "lstm"]  # the config's order, not the training order
    assert m1["model_version"][-8:] == m2["model_version"][-8:]  # the same data + config digest
    assert m1["fingerprint"] == m2["fingerprint"]
    assert (one_process / "config.json").read_text() == (fanned / "config.json").read_text()
    assert (one_process / "train_users.txt").read_text() == (fanned / "train_users.txt").read_text()
    a, b = Predictor.load(one_process).predict_frame(tiny_log), Predictor.load(fanned).predict_frame(tiny_log)
    assert len(a) == len(tiny_log)
    np.testing.assert_array_equal(a, b)


def test_a_subset_of_members_makes_an_artifact_of_exactly_them(tiny_log, tmp_path):
    prepared = prepare(tiny_log, _config())
    art = assemble(prepared, [train_member("lgbm", prepared, progress=False)], tmp_path / "partial")
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["models"] == ["lgbm"]
    assert TrainConfig.load(art / "config.json").models == ["lgbm"]
    assert json.loads((art / "ensemble.json").read_text())["weights"] == {"lgbm": 1.0}
    assert Predictor.load(art).predict_frame(tiny_log).shape == (len(tiny_log),)


def test_steps_refuse_what_does_not_belong(tiny_log):
    prepared = prepare(tiny_log, TrainConfig(models=["lgbm"], seed=3, model_options=OPTIONS))
    with pytest.raises(ValueError, match="not one of this training's models"):
        train_member("lstm", prepared, progress=False)
    with pytest.raises(ValueError, match="no member was trained"):
        assemble(prepared, [], "unused")
