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


def assert_features_equal(old: pd.DataFrame, new: pd.DataFrame) -> None:
    """Codes, labels and users bit for bit; float32 numerics bit for bit but for at most one float32 step
    on a few rows of the residual features (running sums restart per chunk)."""
    assert list(old.columns) == list(new.columns) and len(old) == len(new)
    for c in old.columns:
        a, b = old[c].to_numpy(), new[c].to_numpy()
        if c in ("user_resid", "user_tag_resid"):
            np.testing.assert_allclose(b, a, rtol=0, atol=2.5e-7, err_msg=c)
            assert np.count_nonzero(a != b) <= max(2, len(a) // 10_000), c
        else:
            np.testing.assert_array_equal(b, a, err_msg=c)


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
