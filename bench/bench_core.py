"""Benchmark of the dkt_core foundation on a seed-sized simulated log (7,442 users, ~2.27M rows).

Prints: simulate, write/read+validate (CSV.gz and Parquet), feature building (rows/s, fit_transform on
train users and transform on held-out users) and LightGBM training time, each as wall and CPU time (the fair
figure when others share the cores). Numbers go to docs/benchmarks.md. The feature pipeline's first call in a
fresh process: bench/bench_features.py.
Run: OMP_WAIT_POLICY=PASSIVE python bench/bench_core.py [--users 7442]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def timed(label: str, fn, *args, **kwargs):
    """Run fn; print its wall time and this process's CPU time (user + system, all threads) during it."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"{label:<44} {dt:8.2f} s  (CPU {cpu:.2f} s)")
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=7442)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()

    from dkt_core.data.simulate import SimulationConfig, simulate, write_log
    from dkt_core.data.split import split_users
    from dkt_core.data.validate import validate_file
    from dkt_core.features.pipeline import FeaturePipeline
    from dkt_core.models.lgbm import LGBMConfig, LGBMModel

    frame, _ = timed(f"simulate {args.users} users", simulate, SimulationConfig(users=args.users, seed=0))
    n = len(frame)
    print(f"rows: {n:,}  users: {frame['userID'].nunique():,}  items: {frame['assessmentItemID'].nunique():,}")
    with tempfile.TemporaryDirectory() as tmp:
        csv, pq = Path(tmp) / "log.csv.gz", Path(tmp) / "log.parquet"
        timed("write csv.gz", write_log, frame, str(csv))
        timed("write parquet", write_log, frame, str(pq))
        res, dt = timed("read + validate csv.gz", validate_file, csv)
        print(f"{'':<44} {n / dt / 1e6:8.2f} M rows/s")
        _, dt = timed("read + validate parquet", validate_file, pq)
        print(f"{'':<44} {n / dt / 1e6:8.2f} M rows/s")
    valid = res.valid
    train, held = split_users(valid, 0.2, salt="bench")
    pipe = FeaturePipeline()
    f_train, dt = timed("features fit_transform (train users, OOF)", pipe.fit_transform, train)
    print(f"{'':<44} {len(train) / dt / 1e6:8.2f} M rows/s  ({f_train.shape[1]} columns)")
    f_held, dt = timed("features transform (held-out users)", pipe.transform, held)
    print(f"{'':<44} {len(held) / dt / 1e6:8.2f} M rows/s")
    _, dt = timed("features transform (all rows)", pipe.transform, valid)
    print(f"{'':<44} {n / dt / 1e6:8.2f} M rows/s")
    # the first big call of a process pays page faults for fresh memory; a long-lived worker does not
    _, dt = timed("features transform (all rows, again)", pipe.transform, valid)
    print(f"{'':<44} {n / dt / 1e6:8.2f} M rows/s")
    model = LGBMModel(LGBMConfig(num_boost_round=args.rounds, early_stopping_rounds=args.rounds))
    fit, dt = timed(f"lightgbm train ({args.rounds} rounds, 2 threads)", model.fit, f_train, f_held, pipe.spec,
                    progress=False)
    print(f"{'':<44} valid auc_all {fit.valid_auc:.4f}, {len(pipe.spec.tabular)} features")


if __name__ == "__main__":
    main()
