"""Resident memory of a sequence model trained out of core (windows read from disk) and in memory (issue 15 item 3).

For each log size: `dkt simulate --format parquet`, then `dkt train --models lstm` with a small lstm, once with
``--out-of-core always`` and once with ``--out-of-core never``, each in a child process whose resident memory
(VmRSS of the process and its feature workers, from /proc) is sampled every 0.1 s. Printed per run: wall and CPU
seconds (the child's and its workers' user + sys: the fair figure on a shared machine), the peak RSS of the whole
run (``ru_maxrss``, what /usr/bin/time -v reports) and the peak sampled while the member trains and predicts the
validation rows (from its log line "training lstm" to "lstm done" / "validation metrics on"): the windows,
batches, model and validation predictions, without the feature stage before and the metrics after. Numbers go
to docs/benchmarks.md.

With ``--fit-only`` the member's training is measured alone: one child writes the window chunks (curate, split,
features, as ``dkt train`` does), then a fresh child opens the store, trains and predicts the validation rows
(``fit_windows`` + ``predict_store``) and reports its peak RSS above its own RSS after the imports: the
training's memory without anything the earlier stages left in the process.

Run: OMP_WAIT_POLICY=PASSIVE nice -n 10 python bench/bench_windows_memory.py [--sizes 1000000,3000000]
     [--work DIR] [--chunk-users 1024] [--eval-max-users 20000] [--fit-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROWS_PER_USER = 308.7  # the simulator's density (2,297,172 rows for 7,442 users)
LSTM = {"hidden": 16, "emb_dim": 4, "max_seq_len": 50, "train_stride": 50, "predict_stride": 25, "batch_size": 64,
        "max_epochs": 1, "num_threads": 1, "device": "cpu"}


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its children (the feature workers), KiB; 0 once it is gone."""
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_train(data: Path, out: Path, mode: str, chunk_users: int, eval_max_users: int) -> dict:
    options = [a for k, v in LSTM.items() for a in ("--option", f"lstm.{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-m", "dkt_core.cli", "train", "--data", str(data), "--out", str(out), "--models", "lstm",
           "--quiet", "--out-of-core", mode, *options]
    env = {**os.environ, "DKT_TRAIN_CHUNK_USERS": str(chunk_users), "DKT_TRAIN_EVAL_MAX_USERS": str(eval_max_users),
           "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    training, trained = threading.Event(), threading.Event()
    lines: list[str] = []

    def read_log() -> None:
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"training lstm", line):
                training.set()
            if re.search(r"lstm done in|validation metrics on", line):
                trained.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    peak_training = 0
    while True:  # wait4, not Popen.poll: its rusage is this child's (and its reaped workers'), what time -v shows
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss = tree_rss_kib(proc.pid)
        if training.is_set() and not trained.is_set():
            peak_training = max(peak_training, rss)
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write("".join(lines[-20:]))
        raise SystemExit(f"dkt train --out-of-core {mode} failed ({proc.returncode})")
    metrics = json.loads((out / "metrics.json").read_text())["validation"]["lstm"]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            "training_peak_rss_mib": peak_training / 1024, "auc_all": metrics["auc_all"],
            "n_rows": metrics["n_rows"], "train_seconds": metrics["train_seconds"]}


def stage(name: str, data: Path, work: Path, chunk_users: int) -> dict:
    """A --fit-only step in this (child) process: "windows" writes the chunks, "fit" trains from them."""
    import resource

    from dkt_core.models import MODELS
    from dkt_core.training.config import TrainConfig

    config = TrainConfig(models=["lstm"], model_options={"lstm": LSTM})
    model = MODELS["lstm"](config.model_config("lstm"))
    if name == "windows":
        from dkt_core.data.stream import curate_chunks
        from dkt_core.training.stream import build_features, split_chunks

        split = split_chunks(curate_chunks(data, work / "curated", chunk_users=chunk_users), work / "split", config)
        fs = build_features(split, work / "features", config, eval_max_users=20_000, workers=2, matrices=False,
                            layouts=(model.layout(),))
        fs.pipeline.save(work / "state")
        return {"train_rows": fs.train_rows, "valid_rows": fs.valid_rows}
    from dkt_core.features.pipeline import FeaturePipeline
    from dkt_core.models.window_store import WindowChunk, WindowStore

    def chunks(kind: str) -> list[WindowChunk]:
        return [WindowChunk(r, r.with_name(r.name.replace(".rows.npy", ".seq.npy")), model.layout())
                for r in sorted((work / "features").glob(f"{kind}_*_seq0.rows.npy"))]

    spec = FeaturePipeline.load(work / "state").spec
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.process_time()
    with WindowStore(chunks("train"), spec) as tr, WindowStore(chunks("valid"), spec) as va:
        fit = model.fit_windows(tr, va, spec, progress=False)
        model.predict_store(va)
        facts = {"train_rows": tr.n_rows, "valid_rows": va.n_rows, "sequences": len(tr.seq_start),
                 "store_mib": sum(c.rows.stat().st_size for c in tr.chunks + va.chunks) / 2**20}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**facts, "cpu_s": time.process_time() - t, "valid_auc": fit.valid_auc,
            "imports_rss_mib": base / 1024, "fit_peak_above_imports_mib": (peak - base) / 1024}


def fit_only(data: Path, work: Path, chunk_users: int) -> tuple[dict, dict]:
    out = []
    for name in ("windows", "fit"):
        proc = subprocess.run([sys.executable, __file__, "--stage", name, "--path", str(data), "--work", str(work),
                               "--chunk-users", str(chunk_users)], stdout=subprocess.PIPE, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,3000000", help="comma-separated row counts")
    ap.add_argument("--modes", default="always,never", help="--out-of-core values to run")
    ap.add_argument("--chunk-users", type=int, default=1024, help="DKT_TRAIN_CHUNK_USERS for the out-of-core runs")
    ap.add_argument("--eval-max-users", type=int, default=20_000,
                    help="DKT_TRAIN_EVAL_MAX_USERS: validation users in the metrics sample (out of core)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--fit-only", action="store_true", help="measure the member's training alone (see above)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        import dkt_core.training.stream  # noqa: F401  (imports first: torch, pandas, pyarrow, lightgbm)

        print(json.dumps(stage(args.stage, args.path, args.work, args.chunk_users), default=float))
        return
    root = args.work or Path(tempfile.mkdtemp(prefix="dkt-bench-windows-"))
    print(f"{'rows':>10} {'road':<12} {'wall s':>7} {'cpu s':>7} {'peak RSS MiB':>13} {'training peak MiB':>18} "
          f"{'lstm train s':>13} {'valid AUC':>9} {'n rows':>9}")
    for size in [int(float(s)) for s in args.sizes.split(",") if s]:
        data = root / f"log_{size}.parquet"
        if not data.exists():
            users = max(10, round(size / ROWS_PER_USER))
            subprocess.run([sys.executable, "-m", "dkt_core.cli", "simulate", "--users", str(users), "--format",
                            "parquet", "--out", str(data)], check=True, stdout=subprocess.DEVNULL)
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(data).metadata.num_rows
        if args.fit_only:
            work = root / f"fit_{size}"
            shutil.rmtree(work, ignore_errors=True)
            built, fit = fit_only(data, work, args.chunk_users)
            print(f"{rows:>10,} fit from disk: {fit['train_rows']:,} train + {fit['valid_rows']:,} valid rows, "
                  f"{fit['sequences']:,} train sequences, store {fit['store_mib']:,.0f} MiB on disk; imports "
                  f"{fit['imports_rss_mib']:.0f} MiB, training + validation predictions "
                  f"+{fit['fit_peak_above_imports_mib']:.0f} MiB peak, {fit['cpu_s']:.0f} s CPU, "
                  f"valid AUC {fit['valid_auc']:.4f}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
            continue
        for mode in args.modes.split(","):
            out = root / f"art_{size}_{mode}"
            shutil.rmtree(out, ignore_errors=True)
            facts = run_train(data, out, mode, args.chunk_users, args.eval_max_users)
            cpu, peak = facts["cpu_s"], facts["peak_rss_mib"]
            road = "out of core" if mode == "always" else "in memory"
            print(f"{rows:>10,} {road:<12} {facts['wall_s']:>7.0f} {cpu:>7.0f} {peak:>13.0f} "
                  f"{facts['training_peak_rss_mib']:>18.0f} {facts['train_seconds']:>13.1f} {facts['auc_all']:>9.4f} "
                  f"{facts['n_rows']:>9,}", flush=True)
            print(json.dumps({"rows": rows, "mode": mode, **facts}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
