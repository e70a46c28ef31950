"""Benchmark of the out-of-core road (issue 15 item 3): rows/s and peak RSS of each stage at 1 M, 10 M (and
100 M with --with-100m) simulated rows. Numbers go to docs/benchmarks.md.

Each stage runs in its own child process (peak RSS = that process's ru_maxrss; CPU = its user + sys time, the
fair figure on a shared machine), reading what the previous stage left in the work folder. The features
stage runs --workers processes (default 2, when there are at least two chunks per worker): the CPU column
counts them too, the RSS column is the stage's own process, worker_peak_rss_mib the largest worker:

  simulate   `dkt simulate --format parquet` (block by block)
  read       io.iter_raw over the Parquet file (1 Mi-row batches)
  curate     read + validate (the data contract) + chunks of whole users, deduplicated and sorted
  features   split by user + features.chunked fit (3 passes) + every chunk's float32 matrix written
  lgbm       LightGBM Dataset from the chunks on disk + training (--rounds, no early stop)
  transform  the seed-sized target: one pass of the fitted pipeline over every chunk of the log, written as
             the LightGBM road's float32 matrices by --workers processes, first call in a process, incl. the
             pass for each item's test

Run: OMP_WAIT_POLICY=PASSIVE nice -n 10 python bench/bench_out_of_core.py [--sizes 1000000,10000000]
     [--with-100m] [--rounds 100] [--work DIR]
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
ROWS_PER_USER = 308.7  # the simulator's density (2,297,172 rows for 7,442 users)


def stage(name: str, path: Path, work: Path, rounds: int, workers: int) -> dict:
    """Run one stage in this process; returns rows processed and extra facts."""
    from dkt_core.data.io import iter_raw
    from dkt_core.data.stream import ChunkedLog, curate_chunks
    from dkt_core.training.config import TrainConfig

    config = TrainConfig(models=["lgbm"], model_options={"lgbm": {"num_boost_round": rounds}})
    if name == "simulate":
        from dkt_core.data.simulate import SimulationConfig, write_log_chunked

        users = int(path.stem.split("_")[-1])
        return {"rows": write_log_chunked(SimulationConfig(users=users), path)}
    if name == "read":
        return {"rows": sum(len(raw.frame) + len(raw.bad_lines) for raw in iter_raw(path))}
    if name == "curate":
        log = curate_chunks(path, work / "curated")
        return {"rows": log.rows_read, "chunks": len(log.chunks), **log.seconds}
    if name == "features":
        from dkt_core.training.stream import build_features, split_chunks

        split = split_chunks(ChunkedLog.load(work / "curated"), work / "split", config)
        fs = build_features(split, work / "features", config, eval_max_users=20_000, workers=workers)
        fs.pipeline.save(work / "features" / "state")
        return {"rows": split.rows, **fs.seconds}
    if name == "lgbm":
        from dkt_core.features.pipeline import FeaturePipeline
        from dkt_core.models.lgbm import FeatureChunk, LGBMConfig, LGBMModel

        spec = FeaturePipeline.load(work / "features" / "state").spec

        def chunks(kind: str) -> list[FeatureChunk]:
            return [FeatureChunk(x, x.with_name(x.name.replace(".x.npy", ".y.npy")))
                    for x in sorted((work / "features").glob(f"{kind}_*.x.npy"))]

        train, valid = chunks("train"), chunks("valid")
        model = LGBMModel(LGBMConfig(num_boost_round=rounds, early_stopping_rounds=rounds))
        fit = model.fit_chunks(train, valid, spec, progress=False)
        return {"rows": sum(len(c.labels()) for c in train), "valid_auc": fit.valid_auc}
    if name == "transform":
        from dkt_core.features import chunked
        from dkt_core.features.pipeline import FeaturePipeline

        pipeline = FeaturePipeline.load(work / "features" / "state")
        log = ChunkedLog.load(work / "curated")
        from dkt_core.training.stream import _features_task, _map

        t = time.perf_counter()
        item_test = chunked.item_tests(log.frames(["assessmentItemID", "testId"]))  # each item's test (1st row)
        scan = time.perf_counter() - t
        out = work / "transform"
        out.mkdir(exist_ok=True)
        tasks = [("valid", k, log.directory / name, out / f"all_{k:05d}") for k, name in enumerate(log.chunks)]
        done = list(_map(_features_task, tasks, workers, (pipeline, None, (item_test, 0.0))))  # matrices only
        return {"rows": sum(n for *_, n in done), "item_test_scan_s": scan}
    raise ValueError(name)


def run_stage(name: str, path: Path, work: Path, rounds: int, workers: int) -> dict:
    """The stage in a child process: wall seconds, and its own CPU seconds and peak RSS (it reports them)."""
    proc = subprocess.Popen([sys.executable, __file__, "--stage", name, "--path", str(path), "--work", str(work),
                             "--rounds", str(rounds), "--workers", str(workers)], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"stage {name} failed ({proc.returncode})")
    facts = json.loads(out.strip().splitlines()[-1])
    facts.update(**facts.pop("_usage"))
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    ap.add_argument("--with-100m", action="store_true", help="add the 100 M-row size (about an hour here)")
    ap.add_argument("--rounds", type=int, default=100, help="LightGBM rounds per size")
    ap.add_argument("--workers", type=int, default=2, help="feature processes (DKT_TRAIN_FEATURE_WORKERS)")
    ap.add_argument("--stages", default="simulate,read,curate,features,lgbm,transform")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:  # child: imports first, so the times are the stage's own
        import dkt_core.training.stream  # noqa: F401  (imports pandas, pyarrow, lightgbm, the whole road)

        before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        facts = stage(args.stage, args.path, args.work, args.rounds, args.workers)
        ru, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        if kids.ru_maxrss:  # feature worker processes (reaped): their CPU counts, their peak is shown apart
            facts["worker_peak_rss_mib"] = round(kids.ru_maxrss / 1024)
        facts["_usage"] = {"cpu_s": ru.ru_utime + ru.ru_stime - before.ru_utime - before.ru_stime
                           + kids.ru_utime + kids.ru_stime,
                           "wall_s": time.perf_counter() - t, "peak_rss_mib": ru.ru_maxrss / 1024}
        print(json.dumps(facts, default=float))
        return
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    if args.with_100m:
        sizes.append(100_000_000)
    root = args.work or Path(tempfile.mkdtemp(prefix="dkt-bench-ooc-"))
    print(f"{'rows':>12} {'stage':<10} {'wall s':>8} {'cpu s':>8} {'rows/s (wall)':>14} {'rows/s (cpu)':>13} "
          f"{'peak RSS MiB':>13}  extra")
    for size in sizes:
        users = max(10, round(size / ROWS_PER_USER))
        work = root / f"n{size}"
        work.mkdir(parents=True, exist_ok=True)
        path = work / f"log_{users}.parquet"
        for name in args.stages.split(","):
            f = run_stage(name, path, work, args.rounds, args.workers)
            rows = f.pop("rows")
            wall, cpu, rss = f.pop("wall_s"), f.pop("cpu_s"), f.pop("peak_rss_mib")
            extra = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in f.items())
            print(f"{rows:>12,} {name:<10} {wall:8.1f} {cpu:8.1f} {rows / wall:14,.0f} {rows / max(cpu, 1e-9):13,.0f} "
                  f"{rss:13,.0f}  {extra}", flush=True)
        shutil.rmtree(work)
    if args.work is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
