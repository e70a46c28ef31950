"""Engines for the curation step of a log larger than memory (issue 15 item 3): which one to build on.

The step: drop exact duplicate rows (first kept), sort each user's rows by time (stable), users in order of
first appearance, write Parquet. Each engine runs in its own child process over the same simulated Parquet
log; the script prints wall and CPU seconds and the child's peak RSS, and checks that every engine wrote the
same rows in the same order. Numbers go to docs/benchmarks.md ("A log larger than memory").

  pandas    the whole log in memory (the old road, and the reference the others must equal)
  duckdb    DuckDB SQL: window dedupe + ORDER BY, COPY to Parquet (memory_limit --memory-gb)
  polars    Polars lazy scan, sink_parquet (streaming engine)
  chunks    dkt_core.data.stream.curate_chunks: validation by the data contract, users routed into chunks,
            each chunk deduplicated and sorted (what `dkt train --out-of-core` runs)

Run: OMP_WAIT_POLICY=PASSIVE python bench/bench_engines.py [--users 45000] [--threads 2] [--work DIR]
duckdb and polars are dev dependencies (pip install -e '.[dev]'): the platform itself uses neither.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ENGINES = ("pandas", "duckdb", "polars", "chunks")  # pandas first: the reference the others are compared with
KEY = ["userID", "assessmentItemID", "testId", "answerCode", "Timestamp", "KnowledgeTag"]


def run_engine(engine: str, src: Path, out: Path, threads: int, memory_gb: int) -> None:
    """Curate ``src`` into ``out`` (a Parquet file, or a chunk folder for ``chunks``) with one engine."""
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect(config={"threads": threads, "memory_limit": f"{memory_gb}GB",
                                     "preserve_insertion_order": True})
        cols = ", ".join(f'"{c}"' for c in KEY)
        con.execute(f"""
            COPY (
              WITH src AS (SELECT *, row_number() OVER () AS pos FROM read_parquet('{src}')),
                   dedup AS (SELECT *, row_number() OVER (PARTITION BY {cols} ORDER BY pos) AS k FROM src),
                   kept AS (SELECT *, min(pos) OVER (PARTITION BY "userID") AS first_pos FROM dedup WHERE k = 1)
              SELECT {cols} FROM kept ORDER BY first_pos, "Timestamp", pos
            ) TO '{out}' (FORMAT parquet)""")
    elif engine == "polars":
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        import polars as pl

        lf = pl.scan_parquet(src).with_row_index("pos")
        lf = lf.unique(subset=KEY, keep="first", maintain_order=True)
        lf = lf.with_columns(pl.col("pos").min().over("userID").alias("first_pos"))
        lf.sort(["first_pos", "Timestamp", "pos"]).select(KEY).sink_parquet(out)
    elif engine == "pandas":
        import pandas as pd

        frame = pd.read_parquet(src).drop_duplicates(KEY, keep="first")
        first = frame.groupby("userID", sort=False).ngroup()
        frame = frame.assign(_u=first).sort_values(["_u", "Timestamp"], kind="stable").drop(columns="_u")
        frame.to_parquet(out, index=False)
    elif engine == "chunks":
        from dkt_core.data.stream import curate_chunks

        curate_chunks(src, out)
    else:
        raise SystemExit(f"unknown engine {engine!r}: choose from {', '.join(ENGINES)}")


def read_result(engine: str, out: Path):
    """The curated rows an engine wrote, as one frame of the key columns (Timestamps as text)."""
    import pandas as pd

    if engine == "chunks":
        from dkt_core.data.stream import ChunkedLog, read_chunk

        log = ChunkedLog.load(out)
        frame = pd.concat([read_chunk(out / c) for c in log.chunks], ignore_index=True)
    else:
        frame = pd.read_parquet(out)
    frame = frame[KEY].reset_index(drop=True)
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame.astype(str)


def child(args: argparse.Namespace) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    run_engine(args.child, Path(args.src), Path(args.out), args.threads, args.memory_gb)
    print(json.dumps({"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=45_000, help="simulated students (~307 rows each)")
    p.add_argument("--threads", type=int, default=2, help="threads each engine may use")
    p.add_argument("--memory-gb", type=int, default=4, help="DuckDB's memory_limit")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ", ".join(ENGINES))
    p.add_argument("--work", default="", help="work folder (default: a temporary one, removed afterwards)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from dkt_core.data.simulate import SimulationConfig, write_log_chunked

    work = Path(args.work or tempfile.mkdtemp(prefix="dkt-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = work / f"log_{args.users}.parquet"
        rows = write_log_chunked(SimulationConfig(users=args.users), src)
        print(f"log: {rows:,} rows of {args.users:,} users ({src.stat().st_size / 2**20:.0f} MiB Parquet); "
              f"{args.threads} threads; n = 1 run per engine")
        print(f"{'engine':8} {'wall s':>8} {'cpu s':>8} {'rows/s (wall)':>14} {'peak RSS MiB':>13}  same rows as pandas")
        reference = None
        for engine in args.engines.split(","):
            out = work / (f"{engine}.parquet" if engine != "chunks" else "chunks")
            proc = subprocess.run([sys.executable, __file__, "--child", engine, "--src", str(src), "--out", str(out),
                                   "--threads", str(args.threads), "--memory-gb", str(args.memory_gb)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{engine:8} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            result = read_result(engine, out)
            if engine == "pandas":
                reference = result
            same = "-" if reference is None else str(result.equals(reference))
            print(f"{engine:8} {m['wall_s']:8.1f} {m['cpu_s']:8.1f} {rows / m['wall_s']:14,.0f} {m['peak_rss_mib']:13,}  {same}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
