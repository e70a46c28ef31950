"""The feature pipeline's fast paths give exactly the numbers of the plain ones (issue 15: same features, faster).

Each shortcut is compared with the straightforward computation it replaces, bit for bit: user codes from runs
vs ``pd.factorize``, seconds by integer division vs ``astype``, group-order sums and windows vs row-order ones,
the all-answered Elo step vs the general one, the column-by-column scaled matrix vs scaling all columns at once,
deferred gathers and reorderings (done while the column is written) vs the eager ones, ids hashed on a second
thread vs one after the other; and the writer thread loses no error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dkt_core.data.deferred import Computed, Gathered, InGroupOrder
from dkt_core.data.groupops import Grouping, combine_codes
from dkt_core.features import elo, pipeline
from dkt_core.features.encoders import NumericScaler
from dkt_core.features.pipeline import (
    NUMERIC,
    FeaturePipeline,
    _base_columns,
    _seconds,
    _stat_keys,
    _user_codes,
)


@pytest.mark.parametrize("users", [
    ["b", "b", "a", "a", "a", "c"],  # sorted per user: codes from runs
    ["b", "a", "b", "c", "c", "a"],  # a user in two runs: factorized row by row
    ["a", None, None, "b", "b", "b"],  # nulls: factorized row by row
])
def test_user_codes_are_factorize_codes(users, monkeypatch):
    monkeypatch.setattr(pipeline, "RUNS_MIN_ROWS", 2)
    s = pd.Series(users, dtype="str")
    np.testing.assert_array_equal(_user_codes(s), pd.factorize(s)[0])
    assert _user_codes(s).dtype == np.int64


def test_a_user_in_two_runs_is_still_rejected(tiny_log, monkeypatch):
    monkeypatch.setattr(pipeline, "RUNS_MIN_ROWS", 2)
    users = tiny_log["userID"].unique()
    frame = pd.concat([tiny_log[tiny_log["userID"] == users[0]].iloc[:5], tiny_log[tiny_log["userID"] == users[1]],
                       tiny_log[tiny_log["userID"] == users[0]].iloc[5:]], ignore_index=True)
    with pytest.raises(ValueError, match="sorted per user by time"):
        _base_columns(frame)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_seconds_round_down_like_astype(unit):
    for stamps in (["2020-01-01 00:00:01.7", "2021-06-30 23:59:59.999", "1970-01-01"],
                   ["1969-12-31 23:59:59.5", "2020-01-01", None]):  # before the epoch, NaT: the astype road
        ts = pd.Series(pd.to_datetime(stamps, format="ISO8601")).astype(f"datetime64[{unit}]")
        np.testing.assert_array_equal(_seconds(ts), ts.to_numpy().astype("datetime64[s]").astype(np.int64))


def test_group_order_forms_equal_row_order_forms():
    rng = np.random.default_rng(3)
    codes = combine_codes(np.sort(rng.integers(0, 20, 3000)), rng.integers(0, 7, 3000))
    g = Grouping(codes)
    flags = rng.random(3000) < 0.6
    floats = rng.normal(size=3000)
    # integer sums of 0/1 values are the float sums, exactly
    np.testing.assert_array_equal(g.sum_before(flags), g.sum_before(flags.astype(np.float64)))
    for values in (flags, floats):
        sums = g.sum_before(g.grouped(values), grouped=True)
        np.testing.assert_array_equal(g.ungroup(sums), g.sum_before(values))
        for w in (1, 3, 10):
            windows = g.window_sum_before(values, w)
            np.testing.assert_array_equal(g.ungroup(g.window_of(sums, w)), windows)
            np.testing.assert_array_equal(g.ungroup(g.window_sum_before(g.grouped(values), w, grouped=True)), windows)
    np.testing.assert_array_equal(g.ungroup(g.count_before(grouped=True)), g.count_before())
    np.testing.assert_array_equal(g.ungroup(g.previous(g.grouped(floats), -1.0, grouped=True)), g.previous(floats, -1.0))
    # the previous row of a group is its last row with an all-true mask
    np.testing.assert_array_equal(g.previous(floats, -1.0), g.last_where_before(np.ones(3000, bool), floats, -1.0))


def _elo_reference(user, pos, difficulty, answer):
    """The Elo recursion as first written (general step, rows gathered per position; still elo's road for rows
    without the position-major layout): the numbers to keep."""
    return elo._by_position(user, pos, difficulty, answer, int(user.max()) + 1)


@pytest.mark.parametrize("with_unknown", [False, True])
def test_elo_fast_paths_keep_the_numbers(tiny_log, with_unknown):
    user = pd.factorize(tiny_log["userID"])[0]
    pos = Grouping(user).count_before()
    answer = tiny_log["answerCode"].to_numpy().astype(np.int64)
    if with_unknown:
        answer = np.where(np.random.default_rng(0).random(len(answer)) < 0.1, -1, answer)
    difficulty = np.random.default_rng(1).normal(size=len(user))
    got = elo.elo_ratings(user, pos, difficulty, answer, vectorised=True)
    for a, b in zip(got, _elo_reference(user, pos, difficulty, answer), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("with_unknown", [False, True])
def test_matrix_equals_scaling_every_column(tiny_log, with_unknown):
    """Columns scaled into the matrix one at a time = all columns computed, then scaled (the former road)."""
    frame = tiny_log.copy()
    if with_unknown:
        frame.loc[frame.index[::7], "answerCode"] = -1
    pipe = FeaturePipeline()
    pipe.fit_transform(frame)
    base = _base_columns(frame)
    x = pipe._matrix(base, pipe.stats.transform(_stat_keys(base)))
    base = _base_columns(frame)
    columns = pipe._numeric(base, pipe.stats.transform(_stat_keys(base)))
    assert list(columns) == list(NUMERIC) == list(pipe.scaler.mean)
    np.testing.assert_array_equal(x, pipe.scaler.transform(columns))


@pytest.mark.parametrize("n", [1, 2, 8191, 8193, 100_003])
def test_scaler_moments_equal_the_nan_aware_forms(n):
    from dkt_core.features.encoders import NumericScaler

    rng = np.random.default_rng(n)
    for values in (rng.normal(3.0, 7.0, n), np.log1p(rng.integers(0, 500, n).astype(float)), rng.normal(size=2 * n)[::2]):
        std = float(np.nanstd(values))
        assert NumericScaler.moments(values) == (float(np.nanmean(values)), std if std > 0 else 1.0)
    with_nan = rng.normal(size=n + 2)
    with_nan[::3] = np.nan
    assert NumericScaler.moments(with_nan) == (float(np.nanmean(with_nan)), float(np.nanstd(with_nan)))


def test_item_decomposition_arrow_road_equals_per_item_road():
    from dkt_core.features import ids

    items = np.array(["A060001001", "a123456789", "A06000100", "A0600010011", "12345", "B999000123", "A06000100x",
                      "", "Z000000000", "A060 01001", "1060001001", "A060001001\n"], dtype=object)
    tests = np.array([f"T{i}" for i in range(len(items))], dtype=object)
    arrow = ids._decompose_arrow(items, tests)
    per_item = {k: [] for k in arrow}
    for item, test in zip(items, tests, strict=True):
        for k, v in zip(("head", "mid", "tail", "paper", "mid_tail", "tail_num"), ids._parts(item, test), strict=True):
            per_item[k].append(v)
    for k, v in arrow.items():
        assert v.tolist() == per_item[k], k
    assert arrow["tail_num"].dtype == np.float64 and arrow["head"].dtype == object
    # non-ASCII or non-string ids: the per-item road (Python's \d is wider than [0-9])
    assert ids._decompose_arrow(np.array(["A٠٦٠٠٠١٠٠١"], dtype=object), np.array(["T"], dtype=object)) is None
    assert ids._decompose_arrow(np.array([12345], dtype=object), np.array(["T"], dtype=object)) is None


def test_elo_rows_in_any_order_give_the_same_ratings(tiny_log):
    """Rows not grouped by student (not the pipeline's layout) take the per-position gather road: same numbers."""
    user = pd.factorize(tiny_log["userID"])[0]
    pos = Grouping(user).count_before()
    answer = np.where(np.random.default_rng(2).random(len(user)) < 0.1, -1,
                      tiny_log["answerCode"].to_numpy().astype(np.int64))
    difficulty = np.random.default_rng(3).normal(size=len(user))
    perm = np.random.default_rng(4).permutation(len(user))
    grouped = elo.elo_ratings(user, pos, difficulty, answer, vectorised=True)
    shuffled = elo.elo_ratings(user[perm], pos[perm], difficulty[perm], answer[perm], vectorised=True)
    assert elo._position_major(user[perm], pos[perm], int(user.max()) + 1) is None
    for a, b in zip(shuffled, grouped, strict=True):
        np.testing.assert_array_equal(a, b[perm])


def test_encoder_lookup_of_strings_as_they_are_equals_astype_str():
    from dkt_core.features.encoders import VECTOR_LOOKUP_MIN, CategoryEncoder, as_strings

    enc = CategoryEncoder.fit(np.array([str(i) for i in range(0, 3 * VECTOR_LOOKUP_MIN, 3)], dtype=object))
    strings = np.array([str(i) for i in range(2 * VECTOR_LOOKUP_MIN)], dtype=object)
    mixed = np.array(list(range(VECTOR_LOOKUP_MIN)) + [str(i) for i in range(VECTOR_LOOKUP_MIN)], dtype=object)
    assert as_strings(strings) is strings and as_strings(mixed).dtype.kind == "U"
    for values in (strings, mixed):
        expected = enc._index.get_indexer(values.astype(str))
        np.testing.assert_array_equal(enc.transform(values), np.where(expected >= 0, expected + 2, 1))
    assert (enc.transform(mixed)[:3] == enc.transform(np.array(["0", "1", "2"], dtype=object))).all()


def test_correct_streak_counts_rows_since_the_last_wrong_answer(tiny_log):
    frame = tiny_log.copy()
    frame.loc[frame.index[::11], "answerCode"] = -1  # rows to predict are not wrong answers
    pipe = FeaturePipeline()
    pipe.fit_transform(frame)
    base = _base_columns(frame)
    streak = pipe._numeric(base, pipe.stats.transform(_stat_keys(base)))["correct_streak"]
    expected = []
    for _, answers in frame.groupby("userID", sort=False)["answerCode"]:
        run = 0
        for a in answers:
            expected.append(run)
            run = 0 if a == 0 else run + 1
    np.testing.assert_array_equal(streak, np.log1p(np.array(expected, dtype=np.int64)))


def test_deferred_columns_equal_the_eager_step_and_scale_the_same():
    """A gather or a reordering left to the writer gives the eager column (``np.asarray``), and scaling it while
    writing gives the float32 values of scaling the eager column."""
    rng = np.random.default_rng(5)
    table, codes = rng.normal(size=50), rng.integers(0, 50, 1000)
    values, order = rng.normal(size=1000), rng.permutation(1000)
    in_rows = np.empty(1000)
    in_rows[order] = values
    grouping = Grouping(rng.integers(0, 9, 1000))
    in_group_order = rng.normal(size=1000)
    scaler = NumericScaler(mean={"x": 0.3}, std={"x": 1.7})
    computed = Computed(np.log1p, np.abs(in_group_order))
    for deferred, eager in ((Gathered(table, codes), table[codes]), (InGroupOrder(values, order), in_rows),
                            (grouping.ungroup_later(in_group_order), grouping.ungroup(in_group_order)),
                            (computed, np.log1p(np.abs(in_group_order))),
                            (grouping.ungroup_later(computed), grouping.ungroup(np.log1p(np.abs(in_group_order))))):
        assert len(deferred) == 1000
        np.testing.assert_array_equal(np.asarray(deferred), eager)
        assert np.asarray(deferred, dtype=np.float32).dtype == np.float32
        got, expected = np.empty(1000, np.float32), np.empty(1000, np.float32)
        scaler.transform_column("x", deferred, got)
        scaler.transform_column("x", eager, expected)
        np.testing.assert_array_equal(got, expected)
    few = Gathered(table, codes[:10])  # fewer rows than keys (a serving request): gathered, then scaled
    got, expected = np.empty(10, np.float32), np.empty(10, np.float32)
    scaler.transform_column("x", few, got)
    scaler.transform_column("x", table[codes[:10]], expected)
    np.testing.assert_array_equal(got, expected)
    ordered = Grouping(np.repeat(np.arange(10), 100))  # already grouped: nothing is deferred
    assert ordered.ungroup_later(values) is values


def test_ids_hashed_on_a_second_thread_give_the_same_base(tiny_log, monkeypatch):
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_ROWS", 10**12)
    one = _base_columns(tiny_log)
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_ROWS", 1)
    two = _base_columns(tiny_log)
    for name in ("user_code", "answer", "seconds", "elapsed", "pos", "tail_num"):
        np.testing.assert_array_equal(np.asarray(two[name]), np.asarray(one[name]))
    for group in ("categorical", "stat_keys"):
        assert list(two[group]) == list(one[group])
        for name, (codes, uniques) in one[group].items():
            np.testing.assert_array_equal(two[group][name][0], codes)
            np.testing.assert_array_equal(two[group][name][1], uniques)
    with pytest.raises(ValueError, match="sorted per user by time"):  # the check still runs with the thread
        _base_columns(tiny_log.iloc[::-1].reset_index(drop=True))


@pytest.mark.parametrize("threads", [True, False])
def test_a_column_that_fails_on_the_writer_thread_fails_the_call(tiny_log, monkeypatch, threads):
    """An error while a column is written (on the writer thread, or inline for a small frame) is raised by
    ``transform``, not lost, and no thread is left waiting: the call returns."""
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_ROWS", 1 if threads else 10**12)
    pipe = FeaturePipeline()
    pipe.fit_transform(tiny_log)
    scale = NumericScaler.transform_column

    def failing(self, name, values, out):
        if name == "user_tag_acc":
            raise MemoryError("no room for user_tag_acc")
        scale(self, name, values, out)

    monkeypatch.setattr(NumericScaler, "transform_column", failing)
    with pytest.raises(MemoryError, match="user_tag_acc"):
        pipe.transform(tiny_log)
    monkeypatch.setattr(NumericScaler, "transform_column", scale)
    assert len(pipe.transform(tiny_log)) == len(tiny_log)


def test_sums_before_are_exact_per_group_sums():
    """Booleans and integers: the running sum one row behind equals a per-group sum of the earlier rows exactly
    (booleans in int32, integers in int64); floats: within rounding of it."""
    rng = np.random.default_rng(11)
    codes = combine_codes(np.sort(rng.integers(0, 30, 5000)), rng.integers(0, 5, 5000))
    g = Grouping(codes)
    frame = pd.DataFrame({"g": codes, "flag": rng.random(5000) < 0.4, "count": rng.integers(-3, 1000, 5000),
                          "x": rng.normal(size=5000)})
    for column, dtype in (("flag", np.int32), ("count", np.int64)):
        values = frame[column].to_numpy()
        expected = frame.groupby("g")[column].cumsum().to_numpy().astype(np.int64) - values
        got = g.sum_before(values)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(g.window_sum_before(values, 3),
                                      expected - np.nan_to_num(pd.Series(expected).groupby(codes).shift(3)
                                                               .to_numpy(), nan=0).astype(np.int64))
    x = frame["x"].to_numpy()
    np.testing.assert_allclose(g.sum_before(x), frame.groupby("g")["x"].cumsum().to_numpy() - x, atol=1e-9)


def test_the_writer_thread_and_the_inline_writer_give_the_same_frames(tiny_log, monkeypatch):
    """A large frame is written by a second thread, a small one (a serving request) in the caller's thread:
    the same fit, scaler and frames either way."""
    assert isinstance(pipeline._second_thread(pipeline.PARALLEL_MIN_ROWS - 1), pipeline._Inline)
    frames = []
    for threshold in (1, 10**12):
        monkeypatch.setattr(pipeline, "PARALLEL_MIN_ROWS", threshold)
        pipe = FeaturePipeline()
        fitted = pipe.fit_transform(tiny_log)
        frames.append((fitted, pipe.transform(tiny_log.iloc[:5000]), dict(pipe.scaler.mean)))
    (fit_a, tr_a, mean_a), (fit_b, tr_b, mean_b) = frames
    pd.testing.assert_frame_equal(fit_a, fit_b, check_exact=True)
    pd.testing.assert_frame_equal(tr_a, tr_b, check_exact=True)
    assert mean_a == mean_b
