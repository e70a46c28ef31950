"""The out-of-core road on real data: chunks and chunked features equal the in-memory road's (issue 15 item 3).
Skipped (a missing prerequisite) without ../shared/data."""

from __future__ import annotations

import pandas as pd
import pytest

from dkt_core.data.split import split_users
from dkt_core.data.stream import curate_chunks
from dkt_core.data.validate import validate_file
from dkt_core.features import chunked
from dkt_core.features.pipeline import FeaturePipeline
from tests.feature_equality import assert_features_equal

pytestmark = [pytest.mark.realdata]


@pytest.mark.parametrize("name", ["assist2009_dev.csv.gz", "algebra2005_sample.csv.gz"])
def test_chunked_road_equals_in_memory_road_on_real_logs(shared_data, name, tmp_path):
    path = shared_data / name
    ref = validate_file(path)
    users = ref.valid["userID"].nunique()
    log = curate_chunks(path, tmp_path / "chunks", chunk_users=max(2, users // 7), batch_rows=50_000)
    assert len(log.chunks) >= 3
    pd.testing.assert_frame_equal(pd.concat(list(log.frames()), ignore_index=True), ref.valid)
    assert (log.rows_read, log.rejected, log.duplicates) == (ref.rows_read, len(ref.rejected), ref.duplicates)

    labelled = ref.valid[ref.valid["answerCode"] >= 0].reset_index(drop=True)
    train, valid = split_users(labelled, 0.2, salt="valid-0")
    old = FeaturePipeline()
    f_train = old.fit_transform(train)
    f_valid = old.transform(valid)

    def chunks(frame: pd.DataFrame, per: int):
        code = pd.factorize(frame["userID"])[0] // per
        return lambda: (frame[code == k].reset_index(drop=True) for k in range(code.max() + 1))

    new = FeaturePipeline()
    per = max(2, users // 9)
    state = chunked.fit(new, chunks(train, per))
    assert {k: e.vocab for k, e in new.encoders.items()} == {k: e.vocab for k, e in old.encoders.items()}
    assert new.stats.to_dict() == old.stats.to_dict()
    for c in old.scaler.mean:
        assert new.scaler.mean[c] == pytest.approx(old.scaler.mean[c], rel=1e-12, abs=1e-12)
        assert new.scaler.std[c] == pytest.approx(old.scaler.std[c], rel=1e-12)
    assert_features_equal(f_train, pd.concat(list(chunked.transform_train(new, state, chunks(train, per))),
                                             ignore_index=True))
    assert_features_equal(f_valid, pd.concat(list(chunked.transform(new, chunks(valid, per))), ignore_index=True))
