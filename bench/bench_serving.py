"""Load benchmark of the served model (bento_service/) on loopback.

One `bentoml serve` of DKTService holds both endpoints, so every setting is compared in the same run:
  adaptive  POST /predict_batched  BentoML adaptive batching across requests (max_latency from the env)
  plain     POST /predict          a plain BentoML endpoint, no adaptive batching (a request's students
                                   still go through the model as one frame)
for one-student requests and 64-student requests (each student: a 200-interaction history and 1 target),
at 1, 8 and 32 concurrent keep-alive clients. Reports p50/p99 latency, requests/s, predictions/s, every
non-2xx (503 separately) and the load generator's own CPU. Also profiles Predictor.predict_frame on one
200-row history. Bounded: --duration seconds per cell (default 6) and --max-requests per cell.

    python bench/bench_serving.py [--model ARTIFACT] [--workers 1,2] [--duration 6] [--out bench/results/serving.json]
Without --model it trains a LightGBM artifact on 300 simulated users (cached under $DKT_HOME/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.loadgen import run_load  # noqa: E402
from devtools.services import package_model, start_bentoml, stop  # noqa: E402
from dkt_core.settings import ServingSettings, load  # noqa: E402
from dkt_core.settings import home as dkt_home  # noqa: E402

FMT = "%Y-%m-%d %H:%M:%S"


def default_artifact() -> Path:
    from dkt_core.data.simulate import SimulationConfig, simulate, write_log
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train

    root = dkt_home() / "bench"
    art = root / "lgbm-u300"
    if not (art / "manifest.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        write_log(simulate(SimulationConfig(users=300, seed=0)), str(root / "u300.csv.gz"))
        train(root / "u300.csv.gz", art, TrainConfig(models=["lgbm"]), progress=False)
    return art


def payloads(data_path: Path, history: int = 200) -> dict[str, tuple[bytes, int]]:
    from dkt_core.data.validate import load_interactions

    log = load_interactions(data_path)
    counts = log["userID"].value_counts()
    users = counts[counts > history].index
    students = []
    for i in range(64):
        g = log[log["userID"] == users[i % len(users)]].head(history + 1)
        rows = [{"assessmentItemID": r.assessmentItemID, "testId": r.testId, "KnowledgeTag": r.KnowledgeTag,
                 "Timestamp": r.Timestamp.strftime(FMT), "answerCode": int(r.answerCode)} for r in g.itertuples()]
        target = {k: v for k, v in rows[-1].items() if k != "answerCode"}
        students.append({"userID": f"s{i}", "history": rows[:-1], "targets": [target]})
    return {"1 student": (json.dumps({"students": students[:1]}).encode(), 1),
            "64 students": (json.dumps({"students": students}).encode(), 64)}


def profile_predict_frame(artifact: Path, data_path: Path) -> dict:
    from dkt_core.data.validate import load_interactions
    from dkt_core.predict import Predictor

    p = Predictor.load(artifact)
    log = load_interactions(data_path)
    uid = log["userID"].value_counts().index[0]
    u = log[log["userID"] == uid].head(201).reset_index(drop=True)
    u.loc[200, "answerCode"] = -1

    def ms(fn, n: int = 50) -> float:
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return round((time.perf_counter() - start) / n * 1000, 2)

    feats = p.artifact.pipeline.transform(u)
    return {"rows": len(u), "predict_frame_ms": ms(lambda: p.predict_frame(u)),
            "pipeline_transform_ms": ms(lambda: p.artifact.pipeline.transform(u)),
            "models_ms": {n: ms(lambda m=m: m.predict_proba(feats)) for n, m in p.artifact.models.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="artifact dir (default: a cached 300-user LightGBM)")
    ap.add_argument("--data", type=Path, help="seed-format log to draw histories from (default: the bench log)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts, one server each")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serving.json")
    args = ap.parse_args()

    artifact = args.model or default_artifact()
    data = args.data or (dkt_home() / "bench" / "u300.csv.gz")
    bodies = payloads(data)
    # paths inside the repository are recorded relative to it: the report is committed
    shown = artifact.resolve().relative_to(REPO) if artifact.resolve().is_relative_to(REPO) else artifact
    report = {"artifact": str(shown), "cpus": os.cpu_count(),
              "batch_max_latency_ms": load(ServingSettings).batch_max_latency_ms,
              "duration_s": args.duration, "profile": profile_predict_frame(artifact, data), "cells": []}
    print(json.dumps(report["profile"]), flush=True)
    for workers in [int(w) for w in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as home:
            home = Path(home)
            tag = package_model(artifact, home)
            served = start_bentoml(home, tag, home / "serve.log", env={"DKT_SERVE_WORKERS": str(workers)})
            proc, url, auth = served.proc, served.url, served.headers  # the API key it was started with
            try:
                for name, (body, n_pred) in bodies.items():
                    for clients in [int(c) for c in args.clients.split(",")]:
                        for endpoint, path in (("adaptive", "/predict_batched"), ("plain", "/predict")):
                            # warm-up at full concurrency: connections recycle (every 25 requests) and spread
                            # over the workers before the measured run
                            run_load(url + path, body, clients, 1.5, max_requests=clients * 30, headers=auth)
                            rss = _worker_rss_mb(proc.pid)
                            res = run_load(url + path, body, clients, args.duration, max_requests=args.max_requests,
                                           headers=auth)
                            cell = {"workers": workers, "payload": name, "endpoint": endpoint, **res.summary(n_pred),
                                    "worker_rss_mb": [rss, _worker_rss_mb(proc.pid)]}
                            report["cells"].append(cell)
                            print(json.dumps(cell), flush=True)
            finally:
                stop(proc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


def _worker_rss_mb(pid: int) -> int:
    """Total resident memory of the server's worker processes (a leak shows as growth across cells)."""
    import psutil

    return sum(p.memory_info().rss for p in psutil.Process(pid).children(recursive=True)) >> 20


def markdown(report: dict) -> str:
    lines = ["| workers | payload | clients | endpoint | p50 ms | p99 ms | req/s | pred/s | non-2xx | 503 | loadgen CPU % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report["cells"]:
        lines.append(f"| {c['workers']} | {c['payload']} | {c['clients']} | {c['endpoint']} | {c['p50_ms']} | {c['p99_ms']} | "
                     f"{c['req_per_s']} | {c['pred_per_s']} | {c['non_2xx']} | {c['status_503']} | {c['loadgen_cpu_pct']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
