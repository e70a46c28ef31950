"""Synthetic interaction logs in the seed format, for tests, demos and scale benchmarks.

The generator is vectorised (a seed-sized log of 7,442 users / ~2.27M rows takes seconds) and has the
structure the features look for: items ``A`` + head (grade, 9 values) + mid (chapter) + tail (item no.),
tests = head+mid, one KnowledgeTag family per chapter, students of different ability who *learn*
(P(correct) grows with practice on a tag), tests taken in sittings ("cycles") with short gaps between
items and long gaps between sittings, and occasional retakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dkt_core.data.columns import TIMESTAMP_FORMAT
from dkt_core.data.groupops import Grouping, combine_codes

BLOCK_USERS = 20_000  # students per generated block (~6 M rows at the seed's density)


@dataclass(frozen=True)
class SimulationConfig:
    users: int = 1000
    seed: int = 0
    tests: int = 1537
    tags: int = 912
    mean_tests_per_user: float = 38.0  # ~6.15 items per test -> ~300 rows per user, as in the seed
    retake_prob: float = 0.05
    start: str = "2020-01-01 00:00:00"


def simulate(cfg: SimulationConfig) -> pd.DataFrame:
    """Return a typed interaction log (seed columns), sorted per user by time."""
    blocks = list(simulate_blocks(cfg))
    return blocks[0] if len(blocks) == 1 else pd.concat(blocks, ignore_index=True)


def simulate_blocks(cfg: SimulationConfig) -> Iterator[pd.DataFrame]:
    """The log of ``simulate(cfg)`` as consecutive blocks of at most ``BLOCK_USERS`` whole students."""
    rng = np.random.default_rng(cfg.seed)
    bank = _item_bank(cfg, rng)
    for first in range(0, cfg.users, BLOCK_USERS):
        block_rng = rng if first == 0 else np.random.default_rng([cfg.seed, first // BLOCK_USERS])
        yield _students(cfg, bank, block_rng, first, min(BLOCK_USERS, cfg.users - first))


@dataclass(frozen=True)
class _Bank:
    test_head: np.ndarray
    test_mid: np.ndarray
    test_len: np.ndarray
    test_diff: np.ndarray
    head_start: np.ndarray
    head_count: np.ndarray
    test_tag0: np.ndarray


def _item_bank(cfg: SimulationConfig, rng: np.random.Generator) -> _Bank:
    # --- the item bank: tests belong to a head (grade); each test has 3..13 items and 1..3 tags.
    test_head = np.sort(rng.integers(1, 10, cfg.tests))
    test_mid = np.arange(cfg.tests) % 198 + 1
    test_len = rng.integers(3, 14, cfg.tests)
    test_diff = rng.normal(0.0, 0.8, cfg.tests)
    head_start = np.searchsorted(test_head, np.arange(1, 10))
    head_count = np.bincount(test_head, minlength=10)[1:]
    test_tag0 = rng.integers(0, cfg.tags, cfg.tests)
    return _Bank(test_head, test_mid, test_len, test_diff, head_start, head_count, test_tag0)


def _students(cfg: SimulationConfig, bank: _Bank, rng: np.random.Generator, first: int, users: int) -> pd.DataFrame:
    """Rows of students ``first .. first + users - 1`` (their ids), drawn from ``rng``."""
    test_head, test_mid, test_len, test_diff = bank.test_head, bank.test_mid, bank.test_len, bank.test_diff
    head_start, head_count, test_tag0 = bank.head_start, bank.head_count, bank.test_tag0
    # --- students: ability, learning speed, grade, number of test sittings.
    ability = rng.normal(0.0, 1.0, users)
    learn = rng.gamma(2.0, 0.12, users)
    grade = rng.integers(1, 10, users)
    n_tests = np.maximum(1, rng.poisson(cfg.mean_tests_per_user * rng.lognormal(0, 0.5, users) / 1.13))

    # --- sittings: mostly tests of the student's grade, sometimes a neighbour grade; some retakes.
    s_user = np.repeat(np.arange(users), n_tests)
    head = np.clip(grade[s_user] + rng.choice([-1, 0, 0, 0, 0, 1], len(s_user)), 1, 9)
    s_test = head_start[head - 1] + (rng.random(len(s_user)) * head_count[head - 1]).astype(np.int64)
    retake = rng.random(len(s_user)) < cfg.retake_prob
    prev_test = np.r_[s_test[:1], s_test[:-1]]
    same_user = np.r_[False, s_user[1:] == s_user[:-1]]
    s_test = np.where(retake & same_user, prev_test, s_test)

    # --- expand sittings into item rows.
    r_sitting = np.repeat(np.arange(len(s_user)), test_len[s_test])
    r_user, r_test = s_user[r_sitting], s_test[r_sitting]
    r_tail = Grouping(r_sitting).count_before() + 1
    r_tag = (test_tag0[r_test] + (r_tail - 1) // 5) % cfg.tags
    item_diff = test_diff[r_test] + 0.15 * (r_tail - 7) + rng.normal(0, 0.3, len(r_user))

    # --- learning: P(correct) rises with earlier practice on the tag and overall.
    tag_practice = Grouping(combine_codes(r_user, r_tag)).count_before()
    practice = Grouping(r_user).count_before()
    logit = ability[r_user] - item_diff + learn[r_user] * (np.log1p(tag_practice) + 0.3 * np.log1p(practice))
    answer = (rng.random(len(r_user)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)

    # --- time: 5..300 s between items of a sitting, hours to days between sittings.
    first_in_sitting = np.r_[True, r_sitting[1:] != r_sitting[:-1]]
    gap = np.where(first_in_sitting, rng.exponential(36 * 3600, len(r_user)), rng.lognormal(3.5, 0.8, len(r_user)))
    gap = np.minimum(gap, 30 * 86400).astype(np.int64)
    user_start = rng.integers(0, 180 * 86400, users)
    seconds = user_start[r_user] + Grouping(r_user).sum_before(gap).astype(np.int64) + gap
    ts = pd.Timestamp(cfg.start) + pd.to_timedelta(seconds, unit="s")

    # Seed id form: item = A + head (0h0) + mid (3 digits) + tail (3 digits); test = A + head + 000 + mid.
    # Strings are built once per distinct item, then gathered (string ops on 2M rows are slow).
    item_key, item_inv = np.unique(r_test * 16 + r_tail, return_inverse=True)
    u_test, u_tail = item_key // 16, item_key % 16
    head_code = np.char.add(np.char.add("A0", test_head[u_test].astype(str)), "0")
    mid_code = np.char.zfill(test_mid[u_test].astype(str), 3)
    item_ids = np.char.add(np.char.add(head_code, mid_code), np.char.zfill(u_tail.astype(str), 3))
    test_ids = np.char.add(np.char.add(head_code, "000"), mid_code)
    tag_ids = (np.arange(cfg.tags) + 1000).astype(str)
    return pd.DataFrame(
        {
            "userID": _gather(np.arange(first, first + users).astype(str), r_user),
            "assessmentItemID": _gather(item_ids, item_inv),
            "testId": _gather(test_ids, item_inv),
            "answerCode": answer,
            "Timestamp": ts.floor("s").astype("datetime64[ns]"),
            "KnowledgeTag": _gather(tag_ids, r_tag),
        }
    )


def _gather(values: np.ndarray, index: np.ndarray) -> pd.Series:
    return pd.Series(values.astype(object)[index], dtype="str")


def write_log_chunked(cfg: SimulationConfig, path: str | Path, row_group_rows: int = 1 << 20) -> int:
    """Simulate ``cfg`` straight into a Parquet file, one block at a time (memory: one block, whatever
    ``cfg.users``); the file holds exactly the rows of ``simulate(cfg)``. Returns the number of rows."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for block in simulate_blocks(cfg):
            table = pa.Table.from_pandas(block, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=row_group_rows)
            rows += len(block)
        if writer is not None:
            writer.close()
            writer = None
        tmp.replace(path)  # whole file or nothing: a killed run leaves no half log under the name
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows


def write_log(frame: pd.DataFrame, path: str) -> None:
    """Write a log as CSV (gzip if the name ends in .gz) or Parquet (.parquet)."""
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, index=False)
        return
    out = frame.copy()
    out["Timestamp"] = out["Timestamp"].dt.strftime(TIMESTAMP_FORMAT)
    out.to_csv(path, index=False)
