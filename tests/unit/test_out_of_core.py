"""The out-of-core road (issue 15 item 3): batches, chunks of whole users and chunked features give exactly
what the in-memory road gives on the same log."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from dkt_core.data.io import iter_raw, read_raw
from dkt_core.data.split import split_users
from dkt_core.data.stream import ChunkedLog, curate_chunks
from dkt_core.data.validate import validate_file
from dkt_core.features import chunked
from dkt_core.features.pipeline import FeaturePipeline
from dkt_core.features.stats import user_folds
from tests.feature_equality import assert_features_equal


def _messy(tiny_log: pd.DataFrame) -> pd.DataFrame:
    """The tiny log in shuffled arrival order, with exact duplicates and two bad rows (as text)."""
    df = tiny_log.sample(frac=1, random_state=1).reset_index(drop=True)
    df = pd.concat([df, df.sample(300, random_state=2)], ignore_index=True)
    out = df.copy()
    out["Timestamp"] = out["Timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    out["answerCode"] = out["answerCode"].astype(str)
    out.loc[5, "answerCode"] = "7"
    out.loc[9, "Timestamp"] = "yesterday"
    return out


@pytest.fixture(scope="module")
def messy_files(tiny_log, tmp_path_factory):
    d = tmp_path_factory.mktemp("messy")
    out = _messy(tiny_log)
    lines = out.to_csv(index=False).splitlines()
    lines.insert(400, "a,malformed,line")  # wrong field count, in the middle
    text = "\n".join(lines) + "\nlast,bad\n"
    (d / "log.csv").write_text(text)
    with gzip.open(d / "log.csv.gz", "wt") as f:
        f.write(text)
    out.to_parquet(d / "log.parquet", row_group_size=1000)
    return d


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz", "log.parquet"])
def test_iter_raw_batches_equal_one_read(messy_files, name):
    path = messy_files / name
    whole = read_raw(path)
    parts = list(iter_raw(path, batch_rows=2000))
    assert len(parts) > 1 or name != "log.parquet"
    pd.testing.assert_frame_equal(pd.concat([p.frame for p in parts], ignore_index=True), whole.frame)
    assert [b for p in parts for b in p.bad_lines] == whole.bad_lines
    assert sum(p.rows_read for p in parts) == whole.rows_read


@pytest.mark.parametrize("name", ["log.csv.gz", "log.parquet"])
def test_curated_chunks_equal_validation(messy_files, name, tmp_path):
    path = messy_files / name
    ref = validate_file(path)
    log = curate_chunks(path, tmp_path / "chunks", chunk_users=7, batch_rows=2000)
    assert len(log.chunks) == -(-ref.valid["userID"].nunique() // 7)
    pd.testing.assert_frame_equal(pd.concat(list(log.frames()), ignore_index=True), ref.valid)
    assert (log.rows_read, log.rejected, log.duplicates, log.reasons) == (
        ref.rows_read, len(ref.rejected), ref.duplicates, ref.reasons)
    assert log.duplicates == 300 and log.rejected >= 2
    rejected = pd.read_csv(tmp_path / "chunks" / "rejected.csv")
    assert rejected["line"].tolist() == ref.rejected["line"].tolist()
    again = ChunkedLog.load(tmp_path / "chunks")
    assert again.chunks == log.chunks and again.users == ref.valid["userID"].nunique()


def test_fold_draws_are_a_prefix():
    """chunked._Folds relies on it: the first n of N >= n draws are the n draws."""
    for n, big in ((1, 2), (1001, 70_000), (65_537, 200_000)):
        np.testing.assert_array_equal(user_folds(n, 5, 3), user_folds(big, 5, 3)[:n])


def _chunks(frame: pd.DataFrame, users_per_chunk: int):
    u = pd.factorize(frame["userID"])[0] // users_per_chunk
    return lambda: (frame[u == k].reset_index(drop=True) for k in range(u.max() + 1))


def test_chunked_features_equal_pipeline(tiny_log):
    train, valid = split_users(tiny_log, 0.25, salt="ooc")
    old = FeaturePipeline()
    f_old, v_old = old.fit_transform(train), None
    v_old = old.transform(valid)
    new = FeaturePipeline()
    state = chunked.fit(new, _chunks(train, 7))
    assert len(state.chunk_users) > 3
    assert {k: e.vocab for k, e in new.encoders.items()} == {k: e.vocab for k, e in old.encoders.items()}
    assert new.stats.to_dict() == old.stats.to_dict()
    assert list(new.scaler.mean) == list(old.scaler.mean)
    for c in old.scaler.mean:
        assert new.scaler.mean[c] == pytest.approx(old.scaler.mean[c], rel=1e-12, abs=1e-12)
        assert new.scaler.std[c] == pytest.approx(old.scaler.std[c], rel=1e-12)
    assert_features_equal(f_old, pd.concat(list(chunked.transform_train(new, state, _chunks(train, 7))),
                                           ignore_index=True))
    assert_features_equal(v_old, pd.concat(list(chunked.transform(new, _chunks(valid, 4))), ignore_index=True))
    # the matrices LightGBM reads are those frames' tabular columns
    spec = new.spec
    x_train = np.vstack([x for _, x in chunked.transform_train_matrices(new, state, _chunks(train, 7))])
    x_valid = np.vstack([x for _, x in chunked.transform_matrices(new, _chunks(valid, 4))])
    assert x_train.dtype == np.float32 and x_train.shape == (len(f_old), len(spec.tabular))
    assert_features_equal(f_old[spec.tabular], pd.DataFrame(x_train, columns=spec.tabular))
    assert_features_equal(v_old[spec.tabular], pd.DataFrame(x_valid, columns=spec.tabular))
    # one chunk of a few students: the vectorised Elo path still (the whole log's arithmetic)
    few = valid[valid["userID"].isin(valid["userID"].unique()[:3])].reset_index(drop=True)
    assert_features_equal(old.transform(few).drop(columns=["elo_theta", "elo_p"]),
                          next(chunked.transform(new, lambda: iter([few]))).drop(columns=["elo_theta", "elo_p"]))


def test_chunked_features_non_seed_item_ids(tiny_log):
    """Plain-number item ids take their test as the id's "mid": the test of the item's first row in the
    whole log, also when a later chunk sees the item under another test first."""
    log = tiny_log.copy()
    log["assessmentItemID"] = pd.factorize(log["assessmentItemID"])[0].astype(str)
    flip = np.arange(len(log)) % 11 == 0
    log.loc[flip, "testId"] = "T-other"  # some items appear under two tests
    old = FeaturePipeline()
    f_old = old.fit_transform(log)
    new = FeaturePipeline()
    state = chunked.fit(new, _chunks(log, 9))
    assert new.encoders["mid"].vocab == old.encoders["mid"].vocab
    assert_features_equal(f_old, pd.concat(list(chunked.transform_train(new, state, _chunks(log, 9))),
                                           ignore_index=True))


# --- LightGBM from chunks, and the whole out-of-core training road -------------------------------------------

def _feature_chunks(frame: pd.DataFrame, columns: list[str], directory, name: str, n: int):
    from dkt_core.models.lgbm import FeatureChunk

    out = []
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), n)):
        c = FeatureChunk(directory / f"{name}{k}.x.npy", directory / f"{name}{k}.y.npy")
        np.save(c.x, np.ascontiguousarray(frame.iloc[rows][columns].to_numpy(np.float32)))
        np.save(c.y, frame.iloc[rows]["answerCode"].to_numpy().astype(np.int8))
        out.append(c)
    return out


def test_lgbm_from_chunks_equals_lgbm_from_frame(tiny_log, tmp_path):
    from dkt_core.models.lgbm import LGBMConfig, LGBMModel

    train, valid = split_users(tiny_log, 0.25, salt="lgbm")
    pipe = FeaturePipeline()
    f_train, f_valid = pipe.fit_transform(train), None
    f_valid = pipe.transform(valid)
    cfg = LGBMConfig(num_boost_round=60)
    whole, chunks = LGBMModel(cfg), LGBMModel(cfg)
    fit_a = whole.fit(f_train, f_valid, pipe.spec, seed=1, progress=False)
    fit_b = chunks.fit_chunks(_feature_chunks(f_train, pipe.spec.tabular, tmp_path, "t", 5),
                              _feature_chunks(f_valid, pipe.spec.tabular, tmp_path, "v", 3), pipe.spec, seed=1,
                              progress=False)
    assert fit_b.best_iteration == fit_a.best_iteration and fit_b.valid_auc == pytest.approx(fit_a.valid_auc, abs=1e-12)
    np.testing.assert_allclose(chunks.predict_proba(f_valid), whole.predict_proba(f_valid), rtol=0, atol=1e-9)
    c0 = _feature_chunks(f_valid, pipe.spec.tabular, tmp_path, "p", 1)[0]
    np.testing.assert_allclose(chunks.predict_chunk(c0), whole.predict_proba(f_valid), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="float32"):
        bad = _feature_chunks(f_valid, pipe.spec.tabular[:-1], tmp_path, "bad", 1)
        chunks.fit_chunks(bad, bad, pipe.spec, progress=False)
    fortran = _feature_chunks(f_valid, pipe.spec.tabular, tmp_path, "f", 1)
    np.save(fortran[0].x, np.asfortranarray(np.load(fortran[0].x)))
    with pytest.raises(ValueError, match="Fortran order"):
        chunks.fit_chunks(fortran, fortran, pipe.spec, progress=False)


def test_train_out_of_core_matches_in_memory(messy_files, tmp_path):
    import json

    from dkt_core.predict import Predictor
    from dkt_core.settings import TrainSettings
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.stream import train_out_of_core
    from dkt_core.training.trainer import train

    cfg = TrainConfig(models=["lgbm"], seed=3, model_options={"lgbm": {"num_boost_round": 60}})
    path = messy_files / "log.csv.gz"
    mem = train(path, tmp_path / "mem", cfg, progress=False)
    ooc = train_out_of_core(path, tmp_path / "ooc", cfg, progress=False,
                            settings=TrainSettings(chunk_users=7, eval_max_users=10_000, work_dir=tmp_path))
    assert not list(tmp_path.glob("dkt-train-*"))  # the scratch folder is removed
    state = [json.loads((a / "features" / "feature_state.json").read_text()) for a in (mem, ooc)]
    assert state[0]["encoders"] == state[1]["encoders"] and state[0]["stats"] == state[1]["stats"]
    man = [json.loads((a / "manifest.json").read_text()) for a in (mem, ooc)]
    for key in ("fingerprint", "n_train_users", "n_valid_users"):
        assert man[0][key] == man[1][key], key
    assert (mem / "train_users.txt").read_text() == (ooc / "train_users.txt").read_text()
    met = [json.loads((a / "metrics.json").read_text())["validation"] for a in (mem, ooc)]
    info = met[1]["lgbm"]["out_of_core"]
    assert info["metrics_sample_users"] == info["validation_users"] == man[0]["n_valid_users"]
    assert met[1]["lgbm"]["n_rows"] == met[0]["lgbm"]["n_rows"]
    for k in ("auc_all", "auc_last", "acc_last"):
        assert met[1]["lgbm"][k] == pytest.approx(met[0]["lgbm"][k], abs=2e-3), k
    frame = validate_file(path).valid
    np.testing.assert_allclose(Predictor.load(ooc).predict_frame(frame), Predictor.load(mem).predict_frame(frame),
                               rtol=0, atol=2e-3)


def test_out_of_core_metrics_on_a_bounded_user_sample(messy_files, tmp_path):
    import json

    from dkt_core.settings import TrainSettings
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.stream import train_out_of_core

    cfg = TrainConfig(models=["lgbm"], model_options={"lgbm": {"num_boost_round": 20}})
    art = train_out_of_core(messy_files / "log.parquet", tmp_path / "a", cfg, progress=False,
                            settings=TrainSettings(chunk_users=16, eval_max_users=6))
    m = json.loads((art / "metrics.json").read_text())["validation"]
    info = m["lgbm"]["out_of_core"]
    assert 0 < info["metrics_sample_users"] < info["validation_users"]
    assert m["lgbm"]["n_users"] == m["ensemble"]["n_users"] == info["metrics_sample_users"]
    from dkt_core.models import MODELS
    from dkt_core.training.stream import OUT_OF_CORE_MODELS

    assert OUT_OF_CORE_MODELS == tuple(MODELS)  # every member trains out of core (sequence models: windows on disk)


def test_cli_chooses_the_road(messy_files, tmp_path, monkeypatch):
    from dkt_core.settings import TrainSettings
    from dkt_core.training.stream import should_stream

    pq_path, csv_path = messy_files / "log.parquet", messy_files / "log.csv"
    rows = len(pd.read_parquet(pq_path))
    assert should_stream(pq_path, "auto", TrainSettings(out_of_core_rows=rows))
    assert not should_stream(pq_path, "auto", TrainSettings(out_of_core_rows=rows + 1))
    assert not should_stream(csv_path, "auto", TrainSettings(out_of_core_rows=1))  # CSV: in memory, within caps
    assert should_stream(csv_path, "always", TrainSettings())
    assert not should_stream(pq_path, "never", TrainSettings(out_of_core_rows=1))

    from dkt_core.cli import main

    monkeypatch.setenv("DKT_TRAIN_OUT_OF_CORE_ROWS", str(rows))
    monkeypatch.setenv("DKT_TRAIN_CHUNK_USERS", "20")
    out = tmp_path / "art"
    assert main(["train", "--data", str(pq_path), "--out", str(out), "--quiet",
                 "--option", "lgbm.num_boost_round=10"]) == 0
    import json

    assert "out_of_core" in json.loads((out / "metrics.json").read_text())["validation"]["lgbm"]


def test_feature_workers_do_not_change_the_features(messy_files, tmp_path):
    """Two feature processes write the same matrices, scaler and sample as one."""
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.stream import build_features, split_chunks

    cfg = TrainConfig(models=["lgbm"])
    split = split_chunks(curate_chunks(messy_files / "log.parquet", tmp_path / "c", chunk_users=9), tmp_path / "s", cfg)
    one = build_features(split, tmp_path / "one", cfg, eval_max_users=8, workers=1)
    two = build_features(split, tmp_path / "two", cfg, eval_max_users=8, workers=2)
    assert len(one.train) > 2 and len(one.valid) > 1
    assert one.pipeline.scaler == two.pipeline.scaler and one.pipeline.stats.to_dict() == two.pipeline.stats.to_dict()
    for a, b in zip(one.train + one.valid, two.train + two.valid, strict=True):
        np.testing.assert_array_equal(a.features(), b.features())
        np.testing.assert_array_equal(a.labels(), b.labels())
    for a, b in zip(one.sample, two.sample, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
