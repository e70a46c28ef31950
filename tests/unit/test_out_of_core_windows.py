"""Sequence windows read from disk (issue 15 item 3): the window store gives the windows and batches the in-memory
road builds from the same feature frame, and a sequence model trained from it is the model trained in memory."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from dkt_core.data.split import split_users
from dkt_core.features.pipeline import FeaturePipeline
from dkt_core.models import MODELS
from dkt_core.models.sequences import SequenceLayout, iterate_batches, predict_windows, train_windows
from dkt_core.models.window_store import WindowStore, write_chunk

SEQUENCE_MODELS = ["lstm", "lstm_attn", "bert", "saint"]
# small models, a few epochs; no early stop before the last epoch, so the whole schedule is compared
TINY = {"hidden": 16, "emb_dim": 4, "max_epochs": 3, "patience": 3, "batch_size": 16, "max_seq_len": 24,
        "train_stride": 8, "predict_stride": 8, "lr": 1e-2, "num_threads": 1, "device": "cpu", "n_heads": 2,
        "n_layers": 1}
LAYOUTS = [SequenceLayout(), SequenceLayout(group_by=("head", "mid")), SequenceLayout(split_every_tests=2)]


def tiny(name: str, **extra) -> object:
    names = {f.name for f in dataclasses.fields(MODELS[name].Config)}
    return MODELS[name].Config(**{k: v for k, v in {**TINY, **extra}.items() if k in names})


@pytest.fixture(scope="module")
def features(tiny_log):
    """Feature frames of the train / validation users (the in-memory road's), and the spec."""
    train, valid = split_users(tiny_log, 0.25, salt="windows")
    pipe = FeaturePipeline()
    return pipe.fit_transform(train), pipe.transform(valid), pipe.spec


def store_of(frame: pd.DataFrame, spec, layout: SequenceLayout, directory, name: str, users_per_chunk: int):
    """``frame`` written as window chunks of whole users (what the out-of-core road writes per chunk)."""
    chunk = pd.factorize(frame["userID"])[0] // users_per_chunk
    chunks = [write_chunk(frame[chunk == k].reset_index(drop=True), spec, layout, directory / f"{name}{k:03d}")
              for k in range(chunk.max() + 1)]
    return WindowStore(chunks, spec)


def assert_batches_equal(a, b) -> None:
    for field in ("cat", "num", "label", "valid", "rows", "pos"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape, field
        np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["user", "user-head-mid", "every-2-tests"])
def test_windows_from_disk_equal_windows_in_memory(features, layout, tmp_path):
    f_train, _, spec = features
    memory = layout.build(f_train, spec)
    with store_of(f_train, spec, layout, tmp_path, "t", users_per_chunk=7) as disk:
        assert len(disk.chunks) > 3 and disk.n_rows == memory.n_rows
        # the arrays: records on disk, concatenated, are the in-memory arrays in sequence order
        rec = np.concatenate([np.load(c.rows, mmap_mode="r") for c in disk.chunks])
        frame_rows = np.concatenate([np.load(c.rows, mmap_mode="r")["row"] + disk.offsets[k]
                                     for k, c in enumerate(disk.chunks)])
        np.testing.assert_array_equal(frame_rows, memory.order)
        np.testing.assert_array_equal(rec["cat"].astype(np.int64), memory.cat[memory.order])
        np.testing.assert_array_equal(rec["num"], memory.num[memory.order])
        np.testing.assert_array_equal(rec["label"], memory.label[memory.order])
        np.testing.assert_array_equal(disk.seq_start, memory.seq_start)
        np.testing.assert_array_equal(disk.seq_end, memory.seq_end)
        np.testing.assert_array_equal(disk.labels(), memory.labels())
        # the windows, and every batch of a shuffled training epoch and of prediction
        for seed in (0, 1):
            s_mem, e_mem = train_windows(memory, 24, 8, np.random.default_rng(seed))
            s_disk, e_disk = train_windows(disk, 24, 8, np.random.default_rng(seed))
            np.testing.assert_array_equal(s_mem, s_disk)
            np.testing.assert_array_equal(e_mem, e_disk)
            assert (e_mem - s_mem > 8).any() and (s_mem[1:] > s_mem[:-1]).all()  # long sequences were cut
            batches = zip(iterate_batches(memory, s_mem, e_mem, 16, 24, np.random.default_rng(seed)),
                          iterate_batches(disk, s_disk, e_disk, 16, 24, np.random.default_rng(seed)), strict=True)
            n = 0
            for (a, sel_a), (b, sel_b) in batches:
                np.testing.assert_array_equal(sel_a, sel_b)
                assert_batches_equal(a, b)
                n += 1
            assert n == -(-len(s_mem) // 16)
        windows = predict_windows(memory, 24, 8)
        for a, b in zip(windows, predict_windows(disk, 24, 8), strict=True):
            np.testing.assert_array_equal(a, b)
        for (a, _), (b, _) in zip(iterate_batches(memory, *windows[:2], 64, 24),
                                  iterate_batches(disk, *windows[:2], 64, 24), strict=True):
            assert_batches_equal(a, b)


def test_store_refuses_what_it_cannot_read(features, tmp_path):
    f_train, _, spec = features
    users = f_train["userID"].unique()[:4]
    part = f_train[f_train["userID"].isin(users)].reset_index(drop=True)
    a = write_chunk(part, spec, SequenceLayout(), tmp_path / "a")
    b = write_chunk(part, spec, SequenceLayout(split_every_tests=2), tmp_path / "b")
    with pytest.raises(ValueError, match="different sequence layouts"):
        WindowStore([a, b])
    fewer = dataclasses.replace(spec, numeric=spec.numeric[:-1])
    with pytest.raises(ValueError, match="written by another pipeline"):
        WindowStore([a], fewer)
    with WindowStore([b], spec) as store, pytest.raises(ValueError, match="layout"):
        MODELS["lstm"](tiny("lstm")).fit_windows(store, store, spec, progress=False)
    # a truncated file is named, not read as zeros
    with WindowStore([a], spec) as store:
        data = a.rows.read_bytes()
        a.rows.write_bytes(data[:len(data) - 40])
        with pytest.raises(OSError, match="short read"):
            store.labels()


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_model_from_disk_equals_model_in_memory(features, name, tmp_path):
    """The same seed gives the same weights: the stores yield the same batches in the same order, so training
    from disk and in memory run the same arithmetic (CPU, one thread)."""
    f_train, f_valid, spec = features
    memory, disk = MODELS[name](tiny(name)), MODELS[name](tiny(name))
    fit_mem = memory.fit(f_train, f_valid, spec, seed=5, progress=False)
    layout = disk.layout()
    with store_of(f_train, spec, layout, tmp_path, "t", 9) as tr, store_of(f_valid, spec, layout, tmp_path, "v", 4) as va:
        fit_disk = disk.fit_windows(tr, va, spec, seed=5, progress=False)
        from_store = disk.predict_store(va)
    assert [h["train_loss"] for h in fit_disk.history] == [h["train_loss"] for h in fit_mem.history]
    assert [h["valid_auc"] for h in fit_disk.history] == [h["valid_auc"] for h in fit_mem.history]
    assert len(fit_mem.history) == 3 and fit_mem.valid_auc > 0.6  # it learned something (tiny log)
    expected = memory.predict_proba(f_valid)
    np.testing.assert_array_equal(from_store, expected)  # the validation predictions, row for row
    np.testing.assert_array_equal(disk.predict_proba(f_valid), expected)
    for a, b in zip(memory.module.state_dict().values(), disk.module.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_train_out_of_core_sequence_members_and_ensemble(tiny_log_csv, tmp_path):
    """`dkt train --out-of-core always --models lgbm,lstm`: both members from disk, the ensemble over them, and the
    in-memory road's numbers. The chunks' features equal the in-memory ones (the residuals may differ in their last
    float32 bit, see features.chunked), the sequences and batches are the same, so the lstm is the same model: its
    predictions agree to float32 noise (a wrong window or batch order moves them by ~0.1)."""
    from dkt_core.data.validate import validate_file
    from dkt_core.predict import Predictor
    from dkt_core.settings import TrainSettings
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.stream import train_out_of_core
    from dkt_core.training.trainer import train

    opts = {"lstm": dataclasses.asdict(tiny("lstm")), "lgbm": {"num_boost_round": 40}}
    cfg = TrainConfig(models=["lgbm", "lstm"], seed=3, model_options=opts)
    mem = train(tiny_log_csv, tmp_path / "mem", cfg, progress=False)
    ooc = train_out_of_core(tiny_log_csv, tmp_path / "ooc", cfg, progress=False,
                            settings=TrainSettings(chunk_users=9, eval_max_users=10_000, work_dir=tmp_path))
    assert not list(tmp_path.glob("dkt-train-*"))  # scratch (windows included) removed
    met = [json.loads((a / "metrics.json").read_text()) for a in (mem, ooc)]
    lstm = [m["validation"]["lstm"] for m in met]
    assert lstm[1]["out_of_core"]["reads"] == "windows"
    assert met[1]["validation"]["lgbm"]["out_of_core"]["reads"] == "matrix"
    assert lstm[1]["out_of_core"]["chunks"] > 4
    assert lstm[1]["n_rows"] == lstm[0]["n_rows"] and lstm[1]["best_iteration"] == lstm[0]["best_iteration"]
    for a, b in zip(lstm[0]["history"], lstm[1]["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["valid_auc"] == pytest.approx(a["valid_auc"], abs=1e-5)
    for k in ("auc_all", "auc_last"):
        assert lstm[1][k] == pytest.approx(lstm[0][k], abs=1e-5), k
    weights = [m["ensemble_weights"] for m in met]
    assert set(weights[1]) == {"lgbm", "lstm"} and sum(weights[1].values()) == pytest.approx(1.0)
    for name in weights[0]:
        assert weights[1][name] == pytest.approx(weights[0][name], abs=1e-3)
    assert met[1]["validation"]["ensemble"]["auc_all"] == pytest.approx(met[0]["validation"]["ensemble"]["auc_all"],
                                                                         abs=1e-5)
    frame = validate_file(tiny_log_csv).valid
    (_, p_ooc), (_, p_mem) = Predictor.load(ooc).predict_members(frame), Predictor.load(mem).predict_members(frame)
    np.testing.assert_allclose(p_ooc["lstm"], p_mem["lstm"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(Predictor.load(ooc).predict_frame(frame), Predictor.load(mem).predict_frame(frame),
                               rtol=0, atol=1e-3)


def test_cli_out_of_core_sequence_models(tiny_log_csv, tmp_path, monkeypatch):
    """`dkt train --out-of-core always --models lstm_attn,bert,saint`: the other three sequence models through the
    CLI, one window store shared by their one layout, the ensemble over them, an artifact that serves."""
    from dkt_core.cli import main
    from dkt_core.data.validate import validate_file
    from dkt_core.predict import Predictor

    monkeypatch.setenv("DKT_TRAIN_CHUNK_USERS", "11")
    monkeypatch.setenv("DKT_TRAIN_WORK_DIR", str(tmp_path))
    names = ["lstm_attn", "bert", "saint"]
    options = [a for n in names for k, v in dataclasses.asdict(tiny(n, max_epochs=1)).items()
               for a in ("--option", f"{n}.{k}={json.dumps(v)}")]
    out = tmp_path / "art"
    assert main(["train", "--data", str(tiny_log_csv), "--out", str(out), "--quiet", "--out-of-core", "always",
                 "--models", ",".join(names), *options]) == 0
    assert not list(tmp_path.glob("dkt-train-*"))
    metrics = json.loads((out / "metrics.json").read_text())
    for n in names:
        m = metrics["validation"][n]
        assert m["out_of_core"]["reads"] == "windows" and m["out_of_core"]["chunks"] >= 6
        assert m["n_rows"] == metrics["validation"]["ensemble"]["n_rows"] > 0 and m["auc_all"] > 0.6
    assert set(metrics["ensemble_weights"]) == set(names)
    frame = validate_file(tiny_log_csv).valid
    users = frame["userID"].unique()[:3]
    p = Predictor.load(out).predict_frame(frame[frame["userID"].isin(users)].reset_index(drop=True))
    assert len(p) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_windows_written_by_feature_workers(tiny_log_csv, tmp_path):
    """The training road's window chunks (build_features with a layout, in two spawned workers or here) hold exactly
    the windows of the in-memory road's features of the same users."""
    from dkt_core.data.stream import curate_chunks
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.stream import build_features, split_chunks

    cfg = TrainConfig(models=["lstm"])
    layout = MODELS["lstm"](cfg.model_config("lstm")).layout()
    split = split_chunks(curate_chunks(tiny_log_csv, tmp_path / "c", chunk_users=5), tmp_path / "s", cfg)
    one = build_features(split, tmp_path / "one", cfg, 10_000, workers=1, matrices=False, layouts=(layout,))
    two = build_features(split, tmp_path / "two", cfg, 10_000, workers=2, matrices=False, layouts=(layout,))
    assert not one.train and not one.valid  # no LightGBM matrices asked for
    assert len(one.windows[layout][0]) >= 4 and len(one.windows[layout][1]) >= 2
    for kind in (0, 1):
        for a, b in zip(one.windows[layout][kind], two.windows[layout][kind], strict=True):
            assert a.rows.read_bytes() == b.rows.read_bytes() and a.seq.read_bytes() == b.seq.read_bytes()
    # the in-memory road on the same users: validation users' features from the fitted pipeline
    from dkt_core.data.validate import validate_file

    valid_users = np.concatenate([s[1] for s in one.sample])
    frame = validate_file(tiny_log_csv).valid
    frame = frame[frame["userID"].isin(set(valid_users)) & (frame["answerCode"] >= 0)].reset_index(drop=True)
    memory = layout.build(one.pipeline.transform(frame), one.pipeline.spec)
    with WindowStore(one.windows[layout][1], one.pipeline.spec) as disk:
        np.testing.assert_array_equal(disk.seq_end - disk.seq_start, memory.seq_end - memory.seq_start)
        start, end, _ = predict_windows(memory, 24, 8)
        for (a, _), (b, _) in zip(iterate_batches(memory, start, end, 32, 24),
                                  iterate_batches(disk, start, end, 32, 24), strict=True):
            for field in ("cat", "label", "valid", "rows", "pos"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
            np.testing.assert_allclose(a.num, b.num, rtol=0, atol=1e-5)  # the residuals' last float32 bit
