"""Benchmark of the feature pipeline on the seed-sized log, each measurement the first call in a fresh process.

Issue 15 item 3's target: features >= 2 M rows/s on the 2.3 M-row log on its first call. The log is built once
as bench_core.py builds it (`simulate --users 7442`, written as Parquet, read + validated), the pipeline fitted
once on the training users (bench_core.py's split); then every measurement runs in its own child process that
loads the log and the fitted state first (not timed) and times one call:

  transform   FeaturePipeline.transform of all rows
  fit         FeaturePipeline.fit_transform of the training users (encoders, statistics, out-of-fold, scaler)
  chunks      the out-of-core road: features.chunked.transform_matrices over two chunks of whole users (4,096
              users and the rest, as the curated log holds them), incl. the pass for each item's test

Printed per run: wall and CPU seconds (user + system: the fair figure when others share the cores), rows/s of
each, the CPU split, the page faults (fresh memory: on this VM its page faults are most of the system time),
the peak RSS during the call (the loaded log included) and the load average. Numbers go to docs/benchmarks.md.
Run: OMP_WAIT_POLICY=PASSIVE python bench/bench_features.py [--repeat 3] [--modes transform,fit,chunks]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
CHUNK_USERS = 4096  # users per chunk of the curated log (dkt_core.data.stream)


def prepare(work: Path, users: int) -> None:
    from dkt_core.data.simulate import SimulationConfig, simulate, write_log
    from dkt_core.data.split import split_users
    from dkt_core.data.validate import validate_file
    from dkt_core.features.pipeline import FeaturePipeline

    write_log(simulate(SimulationConfig(users=users, seed=0)), str(work / "log.parquet"))
    valid = validate_file(work / "log.parquet").valid
    train, _ = split_users(valid, 0.2, salt="bench")
    with open(work / "log.pkl", "wb") as f:
        pickle.dump({"valid": valid, "train": train}, f, protocol=5)
    pipe = FeaturePipeline()
    pipe.fit_transform(train)
    pipe.save(work / "state")


def child(work: Path, mode: str) -> dict:
    import numpy as np
    import pandas as pd

    from dkt_core.features import chunked
    from dkt_core.features.pipeline import FeaturePipeline

    with open(work / "log.pkl", "rb") as f:
        log = pickle.load(f)
    pipe = FeaturePipeline.load(work / "state")
    valid = log["valid"]
    users = pd.factorize(valid["userID"])[0]
    cut = np.searchsorted(users, [0, CHUNK_USERS, users.max() + 1])
    chunks = [valid.iloc[cut[i]:cut[i + 1]] for i in range(2)]
    peak_reset = _reset_peak_rss()
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if mode == "transform":
        rows = len(pipe.transform(valid))
    elif mode == "fit":
        rows = len(FeaturePipeline().fit_transform(log["train"]))
    elif mode == "chunks":
        rows = sum(len(x) for _, x in chunked.transform_matrices(pipe, lambda: iter(chunks)))
    else:
        raise ValueError(mode)
    wall, ru = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return {"rows": rows, "wall_s": wall, "user_s": ru.ru_utime - before.ru_utime, "sys_s": ru.ru_stime - before.ru_stime,
            "faults": ru.ru_minflt - before.ru_minflt, "peak_rss_mib": _peak_rss_mib() if peak_reset else float("nan"),
            "load": os.getloadavg()[0]}


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: clear_refs 5), so the peak is the timed call's, not the loading's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=7442)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement")
    ap.add_argument("--modes", default="transform,fit,chunks")
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args.work, args.mode)))
        return
    with tempfile.TemporaryDirectory(prefix="dkt-bench-features-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        prepare(work, args.users)
        print(f"log built and pipeline fitted in {time.perf_counter() - t:.1f} s")
        print(f"{'mode':<10} {'rows':>10} {'wall s':>7} {'cpu s':>6} {'M rows/s wall':>13} {'M rows/s cpu':>12} "
              f"{'user':>5} {'sys':>5} {'faults':>7} {'peak RSS MiB':>12} {'load':>5}")
        for mode in args.modes.split(","):
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, __file__, "--work", str(work), "--mode", mode],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                cpu = r["user_s"] + r["sys_s"]
                print(f"{mode:<10} {r['rows']:>10,} {r['wall_s']:>7.2f} {cpu:>6.2f} {r['rows'] / r['wall_s'] / 1e6:>13.2f} "
                      f"{r['rows'] / cpu / 1e6:>12.2f} {r['user_s']:>5.2f} {r['sys_s']:>5.2f} {r['faults']:>7,} "
                      f"{r['peak_rss_mib']:>12,.0f} {r['load']:>5.2f}", flush=True)


if __name__ == "__main__":
    main()
