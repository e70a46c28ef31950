"""FeaturePipeline: interactions -> feature frame, the one code path for training and serving.

``fit_transform`` on the training users fits the encoders, the population statistics and the scaler
(population statistics out-of-fold on those rows); ``transform`` applies the stored state to anything
else (validation users, evaluation files, a request's history at serving time). State is saved as JSON
next to the model so a retrained model always ships with its own encoders.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dkt_core.data.columns import LABEL, USER
from dkt_core.data.deferred import Computed, Deferred, Gathered
from dkt_core.data.groupops import UserGroupings
from dkt_core.features.elo import difficulty_from_accuracy, elo_ratings
from dkt_core.features.encoders import CategoryEncoder, NumericScaler
from dkt_core.features.history import history_columns
from dkt_core.features.ids import decompose_items, elapsed_seconds
from dkt_core.features.spec import FeatureSpec
from dkt_core.features.stats import SMOOTHING, STAT_KEYS, PopulationStats, out_of_fold

# Encoded categorical inputs of the sequence models (item/test/tag ids, id parts, elapsed 1-s bin,
# previous answer: 2 wrong, 3 correct, 1 none).
CATEGORICAL = ["item", "test", "tag", "head", "mid", "tail", "mid_tail", "elapsed_bin", "prev_answer"]
ENCODED = ["item", "test", "tag", "head", "mid", "tail", "mid_tail"]
CODE_COLUMNS = [LABEL, *ENCODED, "elapsed_bin", "prev_answer"]  # the int64 block of a feature frame
# The numeric features in the order a pipeline fits them (its scaler's order: the feature frame's columns)
NUMERIC = (
    "user_cnt", "user_acc", "recent_acc_5", "recent_acc_10", "prev_answer_num", "correct_streak",
    "user_tag_cnt", "user_tag_acc", "user_tag_recent_acc_3", "tag_seconds_since", "user_test_cnt", "user_test_acc",
    "user_item_cnt", "user_item_acc", "user_item_last", "user_head_cnt", "user_head_acc", "cycle_pos", "cycle_acc",
    "test_sittings_before", "is_first", "item_acc", "item_pop", "test_acc", "test_pop", "tag_acc", "tag_pop",
    "head_acc", "head_pop", "item_acc_h", "user_resid", "user_tag_resid", "tag_acc_gap", "elo_theta", "elo_p",
    "elapsed_log", "user_elapsed_mean", "tail_num",
)

WRITE_AHEAD = 2  # computed columns waiting for the writer thread: each is a float64 column of the log


@dataclass(frozen=True)
class FeatureConfig:
    oof_folds: int = 5
    seed: int = 0


class FeaturePipeline:
    def __init__(self, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()
        self.encoders: dict[str, CategoryEncoder] = {}
        self.stats: PopulationStats | None = None
        self.scaler: NumericScaler | None = None

    # -- public API ------------------------------------------------------------------------------------
    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        base = _base_columns(frame)
        self.encoders = {c: CategoryEncoder.fit(base["categorical"][c][1]) for c in ENCODED}
        keys = _stat_keys(base)
        self.stats = PopulationStats.fit(keys, base["answer"])
        oof = out_of_fold(keys, base["answer"], base["user_code"], self.config.oof_folds, self.config.seed)
        return self._frame(frame, base, oof, fit=True)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.stats is None or self.scaler is None:
            raise RuntimeError("FeaturePipeline must be fit (or loaded) before transform")
        base = _base_columns(frame)
        return self._frame(frame, base, self.stats.transform(_stat_keys(base)))

    @property
    def spec(self) -> FeatureSpec:
        cards = {c: self.encoders[c].cardinality for c in ENCODED}
        cards.update({"elapsed_bin": 602 + 2, "prev_answer": 4})
        numeric = list(self.scaler.mean) if self.scaler else []
        return FeatureSpec(categorical=cards, numeric=numeric, tabular=numeric)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "encoders": {k: v.vocab for k, v in self.encoders.items()},
            "stats": self.stats.to_dict() if self.stats else None,
            "scaler": {"mean": self.scaler.mean, "std": self.scaler.std} if self.scaler else None,
        }
        (directory / "feature_state.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, directory: str | Path) -> FeaturePipeline:
        state = json.loads((Path(directory) / "feature_state.json").read_text())
        pipe = cls(FeatureConfig(**state["config"]))
        pipe.encoders = {k: CategoryEncoder(vocab=v) for k, v in state["encoders"].items()}
        pipe.stats = PopulationStats.from_dict(state["stats"])
        pipe.scaler = NumericScaler(**state["scaler"])
        return pipe

    # -- internals -------------------------------------------------------------------------------------
    def _numeric_columns(self, base: dict, pop: dict[str, np.ndarray | Deferred], *, vectorised_elo: bool = False,
                         after_history: Callable[[], None] | None = None) -> Iterator[tuple[str, np.ndarray | Deferred]]:
        """(name, float64 column) of every numeric feature, in no fixed order (``NUMERIC`` is the order). A column
        may be deferred (``dkt_core.data.deferred``: ``np.asarray`` gives it), so that the writer does its last
        steps (a gather, a reordering, an elementwise function). Consumes ``pop`` (the population statistics per row): each column is dropped once
        it is not needed any more. ``after_history`` is called once the student-history columns are yielded and
        their groupings dropped: from there on the fewest arrays are alive."""
        prior = self.stats.prior
        codes = {k: key[0] for k, key in _stat_keys(base).items()}
        # item difficulty shrunk towards its test's accuracy instead of the global one: most items have
        # few answers, and their test says more about them than the population does
        # item_acc + SMOOTHING * (test_acc - prior) / (expm1(item_pop) + SMOOTHING), in place
        item_acc_h = np.subtract(np.asarray(pop["test_acc"]), prior)
        item_acc_h *= SMOOTHING
        shrink = np.expm1(np.asarray(pop["item_pop"]))
        shrink += SMOOTHING
        item_acc_h /= shrink
        del shrink
        item_acc_h += np.asarray(pop["item_acc"])
        tag_acc = np.asarray(pop["tag_acc"])
        while pop:
            yield pop.popitem()
        yield "item_acc_h", item_acc_h
        yield from history_columns(
            base["groups"], codes["item"], codes["test"], codes["tag"], codes["head"],
            base["answer"], base["seconds"], prior, expected=item_acc_h, tag_acc=tag_acc,
        )
        del tag_acc
        if after_history is not None:
            after_history()
        difficulty = difficulty_from_accuracy(item_acc_h)
        del item_acc_h
        theta, p = elo_ratings(base["user_code"], base["pos"], difficulty, base["answer"], vectorised=vectorised_elo)
        del difficulty
        yield "elo_theta", theta
        yield "elo_p", p
        del theta, p
        yield "elapsed_log", Computed(np.log1p, base["elapsed"])
        yield "user_elapsed_mean", Computed(_log_mean, base["groups"].by("user").sum_before(base["elapsed"]), base["pos"])
        yield "tail_num", base["tail_num"]

    def _numeric(self, base: dict, pop: dict[str, np.ndarray], *, vectorised_elo: bool = False
                 ) -> dict[str, np.ndarray]:
        """Every numeric feature (unscaled float64) by name, in ``NUMERIC`` order (consumes ``pop``)."""
        columns = dict(self._numeric_columns(base, pop, vectorised_elo=vectorised_elo))
        return {k: np.asarray(columns[k], dtype=np.float64) for k in NUMERIC}

    def _frame(self, frame: pd.DataFrame, base: dict, pop: dict[str, np.ndarray], *, fit: bool = False) -> pd.DataFrame:
        """The feature frame of ``frame`` (``_matrix`` then ``_assemble``; consumes ``pop``). The int64 code block's
        encoded ids are written on the writer thread while the last numeric columns (Elo, time) are computed, and
        its answer columns on this thread after them: started once the student-history groupings are dropped, the
        block does not add to the call's peak memory. (Written first, it raised the peak by its 184 MiB on the
        2.3 M-row log, and fresh memory is most of the system time on this VM.)"""
        codes = _code_block(len(base["answer"]))  # untouched until written: no memory yet
        with _second_thread(len(codes)) as writer:
            ids: list[Future] = []
            x = self._matrix(base, pop, fit=fit, writer=writer,
                             after_history=lambda: ids.append(writer.submit(self._id_codes, base, codes)))
            _answer_codes(base, codes)
            ids[0].result()
        return self._assemble(frame, base, x, codes)

    def _matrix(self, base: dict, pop: dict[str, np.ndarray], *, vectorised_elo: bool = False, fit: bool = False,
                writer: Executor | None = None, after_history: Callable[[], None] | None = None) -> np.ndarray:
        """The scaled numeric features as one column-major float32 (rows, columns) matrix in the scaler's order;
        ``fit``: fit the scaler on them first (columns in ``NUMERIC`` order). Each column is scaled into the
        matrix as soon as it is computed, so only a few float64 columns are alive at a time (consumes ``pop``).
        The scaling runs on one ``writer`` thread (its own when not given), at most ``WRITE_AHEAD`` columns behind
        the computing one: numpy releases the GIL, so the writes (and the page faults of the fresh matrix) overlap
        the next column's arithmetic. (Computing the feature families themselves on two threads measured slower
        on the 2 shared cores: both allocate, and they contend for the memory.)"""
        names = list(NUMERIC) if fit else list(self.scaler.mean)
        where = {c: j for j, c in enumerate(names)}
        out = np.empty((len(base["answer"]), len(names)), dtype=np.float32, order="F")
        scaler = NumericScaler(mean=dict.fromkeys(names, 0.0), std=dict.fromkeys(names, 1.0)) if fit else self.scaler

        def write(name: str, values: np.ndarray | Deferred) -> None:
            if fit or not isinstance(values, Deferred):
                values = np.asarray(values, dtype=np.float64)
            if fit:
                scaler.mean[name], scaler.std[name] = NumericScaler.moments(values)
            scaler.transform_column(name, values, out[:, where[name]])

        done = set()
        with ExitStack() as stack:
            if writer is None:
                writer = stack.enter_context(_second_thread(len(out)))
            pending: deque[Future] = deque()
            for name, values in self._numeric_columns(base, pop, vectorised_elo=vectorised_elo,
                                                      after_history=after_history):
                if name not in where:
                    continue
                pending.append(writer.submit(write, name, values))
                del values  # the writer holds it until written
                while len(pending) > WRITE_AHEAD:
                    pending.popleft().result()
                done.add(name)
            for f in pending:
                f.result()
        if missing := [c for c in names if c not in done]:
            raise KeyError(f"the fitted scaler has columns this pipeline does not compute: {missing}; "
                           "refit the features (dkt train) with this version")
        self.scaler = scaler
        return out

    def _codes(self, base: dict) -> np.ndarray:
        """The (rows, ``CODE_COLUMNS``) column-major int64 block: label, encoded ids, elapsed bin, previous answer."""
        codes = _code_block(len(base["answer"]))
        self._id_codes(base, codes)
        _answer_codes(base, codes)
        return codes

    def _id_codes(self, base: dict, codes: np.ndarray) -> None:
        """Write the encoded ids (``ENCODED``) into their columns of the code block ``codes``."""
        for j, c in enumerate(ENCODED, start=1):
            row_codes, uniques = base["categorical"][c]
            np.take(self.encoders[c].transform(uniques), row_codes, out=codes[:, j])

    def _assemble(self, frame: pd.DataFrame, base: dict, numeric: np.ndarray | dict[str, np.ndarray],
                  codes: np.ndarray | None = None) -> pd.DataFrame:
        """The feature frame: user ids, one column-major int64 block (label and categorical codes: ``_codes``, built
        here when not given) and the scaled float32 ``numeric`` matrix (``_matrix``; unscaled columns by name, as
        ``_numeric`` gives them, are scaled here), joined without re-stacking; each block is written once."""
        if isinstance(numeric, dict):
            numeric = self.scaler.transform(numeric)
        if codes is None:
            codes = self._codes(base)
        index = frame.index
        users = frame[USER]
        # a column of the string dtype pandas gives ids anyway is shared as it is (Arrow: immutable); anything
        # else goes through numpy and pandas' inference, as before
        users = users.array if len(users) and users.dtype == _INFERRED_STR else users.to_numpy()
        blocks = [
            pd.DataFrame({USER: users}, index=index),
            pd.DataFrame(codes, columns=CODE_COLUMNS, index=index, copy=False),
            pd.DataFrame(numeric, columns=list(self.scaler.mean), index=index, copy=False),
        ]
        return pd.concat(blocks, axis=1, copy=False)


class _Done:
    """What ``_Inline.submit`` returns: the call's result (its error is raised by submit itself)."""

    def __init__(self, value: object):
        self.value = value

    def result(self) -> object:
        return self.value


class _Inline(Executor):
    """Runs each submitted call at once, in the caller's thread (no ``Future``: each costs a lock)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> _Done:
        return _Done(fn(*args, **kwargs))


def _second_thread(rows: int) -> Executor:
    """Where work on a frame of ``rows`` rows runs beside the caller (the matrix writer, the id hashing): one thread
    from ``PARALLEL_MIN_ROWS`` rows; below that (a serving request) the caller's thread, since the hand-offs to a
    thread cost more than the work."""
    return ThreadPoolExecutor(max_workers=1) if rows >= PARALLEL_MIN_ROWS else _Inline()


def _code_block(rows: int) -> np.ndarray:
    """An empty (rows, ``CODE_COLUMNS``) column-major int64 code block."""
    return np.empty((rows, len(CODE_COLUMNS)), dtype=np.int64, order="F")


def _log_mean(total: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log1p of the mean of ``n`` values summing to ``total`` (0 for none)."""
    return np.log1p(total / np.maximum(n, 1))


def _answer_codes(base: dict, codes: np.ndarray) -> None:
    """Write the label, the elapsed bin and the previous answer into their columns of the code block ``codes``."""
    answer = base["answer"]
    codes[:, 0] = answer
    np.add(base["elapsed"], 2, out=codes[:, 1 + len(ENCODED)], casting="unsafe")  # whole seconds in [0, 600], from 2
    # previous answer: 2 wrong, 3 correct (the answer + 2), 1 none (first row of a user, or a row to predict)
    prev = codes[:, 2 + len(ENCODED)]
    prev[:1] = 1
    np.add(answer[:-1], 2, out=prev[1:])
    prev[base["pos"] == 0] = 1


def _base_columns(frame: pd.DataFrame, item_test: dict[str, str] | None = None) -> dict:
    """Codes and raw arrays every feature family needs; checks the frame is sorted per user by time.

    ``item_test``: each item's test (the test of its first row in the whole log this frame is a chunk of);
    default: the test of the item's first row in ``frame``."""
    with _second_thread(len(frame)) as side:
        # the item and tag ids are hashed on a second thread (Arrow's kernels release the GIL) meanwhile
        ids = side.submit(_factorize_columns, frame, ("assessmentItemID", "KnowledgeTag"))
        user_code, seconds, groups, test = _user_columns(frame)
        item, tag = ids.result()
    # the id parts are computed once per distinct item, then gathered by item code
    first_row = np.zeros(len(item[1]), dtype=np.int64)
    first_row[item[0][::-1]] = np.arange(len(frame))[::-1]
    item_tests = test[1][test[0][first_row]]
    if item_test is not None:
        item_tests = np.array([item_test[i] for i in item[1]], dtype=object)
    parts = decompose_items(item[1], item_tests)
    head_of_item, head_uniques = _factorize(parts["head"])
    categorical = {"item": item, "test": test, "tag": tag}
    categorical.update({c: (item[0], parts[c]) for c in ("head", "mid", "tail", "mid_tail")})
    return {
        "user_code": user_code,
        "categorical": categorical,
        "stat_keys": {"item": item, "test": test, "tag": tag, "head": (head_of_item[item[0]], head_uniques)},
        "tail_num": Gathered(parts["tail_num"], item[0]),  # a number per item: gathered as it is written
        "answer": frame[LABEL].to_numpy().astype(np.int64),
        "seconds": seconds,
        "elapsed": elapsed_seconds(user_code, seconds),
        "pos": groups.by("user").count_before(),
        "groups": groups,
    }


def _user_columns(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, UserGroupings, tuple[np.ndarray, np.ndarray]]:
    """(user codes, whole seconds, the user groupings, the factorized tests) of a frame; checks it is sorted per
    user by time."""
    user_code = _user_codes(frame[USER])
    seconds = _seconds(frame["Timestamp"])
    if len(frame) > 1:
        user_changes = np.count_nonzero(user_code[1:] != user_code[:-1])
        backwards = (user_code[1:] == user_code[:-1]) & (seconds[1:] < seconds[:-1])
        if user_changes + 1 != user_code.max() + 1 or backwards.any():
            raise ValueError("interactions must be sorted per user by time (dkt_core.data.validate sorts them)")
    return user_code, seconds, UserGroupings(user_code), _factorize(frame["testId"])


def _factorize_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_factorize(frame[c]) for c in columns]


def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


_INFERRED_STR = pd.Series(np.array(["id"], dtype=object)).dtype  # what a column of Python strings becomes
PARALLEL_MIN_ROWS = 100_000  # from this many rows a second thread writes the matrix and hashes ids (_second_thread)
RUNS_MIN_ROWS = 10_000  # below this the Arrow kernels' call overhead outweighs hashing every row (serving)


def _user_codes(users: pd.Series) -> np.ndarray:
    """Each row's user code in order of first appearance (``pd.factorize``'s codes). A log sorted per user holds
    each user in one run of rows: then only the first row of each run is hashed (an Arrow string column's
    neighbours compared with one kernel). Anything else (a user in two runs, nulls, other dtypes) is factorized
    row by row, and the caller's sort check then names the problem."""
    if len(users) >= RUNS_MIN_ROWS and isinstance(users.dtype, pd.StringDtype) and users.dtype.storage == "pyarrow":
        values = pa.chunked_array(users.array.__arrow_array__()).combine_chunks()
        if values.null_count == 0:
            changed = pc.not_equal(values.slice(1), values.slice(0, len(values) - 1))
            first = np.flatnonzero(np.concatenate(([True], changed.to_numpy(zero_copy_only=False))))
            if len(pc.unique(values.take(pa.array(first)))) == len(first):  # no user in two runs
                return np.repeat(np.arange(len(first), dtype=np.int64), np.diff(np.append(first, len(values))))
    return pd.factorize(users)[0].astype(np.int64, copy=False)


def _seconds(timestamps: pd.Series) -> np.ndarray:
    """Whole seconds since the epoch (int64), rounded down as ``astype("datetime64[s]")`` does."""
    values = timestamps.to_numpy()
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}.get(
        np.datetime_data(values.dtype)[0] if values.dtype.kind == "M" else "")
    if per_second and len(values) and values.min() >= np.datetime64(0, "s"):
        return values.view(np.int64) // per_second  # non-negative: floor division is that rounding, 8x faster
    return values.astype("datetime64[s]").astype(np.int64)


def _stat_keys(base: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: base["stat_keys"][k] for k in STAT_KEYS}
