"""`dkt simulate` in blocks: the chunked Parquet writer holds exactly the in-memory log's rows."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from dkt_core.data import simulate as sim


def test_chunked_parquet_equals_in_memory_simulate(tmp_path, monkeypatch):
    monkeypatch.setattr(sim, "BLOCK_USERS", 7)  # 25 users -> 4 blocks, each from its own generator
    cfg = sim.SimulationConfig(users=25, seed=5, tests=40, tags=20)
    path = tmp_path / "log.parquet"
    rows = sim.write_log_chunked(cfg, path, row_group_rows=500)
    expected = sim.simulate(cfg)
    got = pd.read_parquet(path)
    assert rows == len(expected) == len(got)
    assert pq.ParquetFile(path).metadata.num_row_groups > 4  # really written piece by piece
    pd.testing.assert_frame_equal(got.astype(expected.dtypes.to_dict()), expected, check_dtype=False)
    assert got["userID"].nunique() == 25 and list(pd.unique(got["userID"]))[:3] == ["0", "1", "2"]
    assert not list(tmp_path.glob("*.partial"))


def test_blocks_are_deterministic_and_whole_students(monkeypatch):
    monkeypatch.setattr(sim, "BLOCK_USERS", 5)
    cfg = sim.SimulationConfig(users=12, seed=3, tests=80, tags=30)
    blocks = list(sim.simulate_blocks(cfg))
    assert [b["userID"].nunique() for b in blocks] == [5, 5, 2]
    assert not set(blocks[0]["userID"]) & set(blocks[1]["userID"])  # a student lives in one block
    pd.testing.assert_frame_equal(pd.concat(list(sim.simulate_blocks(cfg)), ignore_index=True), sim.simulate(cfg))


def test_cli_format_parquet(tmp_path, capsys):
    from dkt_core.cli import main

    out = tmp_path / "s.parquet"
    assert main(["simulate", "--users", "6", "--format", "parquet", "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), sim.simulate(sim.SimulationConfig(users=6)),
                                  check_dtype=False)
    assert main(["simulate", "--users", "6", "--format", "parquet", "--out", str(tmp_path / "s.csv")]) == 2
    assert ".parquet suffix" in capsys.readouterr().err
