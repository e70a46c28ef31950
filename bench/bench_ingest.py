"""Benchmark of one ingestion run against a local moto S3 server: rows/s and peak RSS.

Cases (each ingestion runs in a fresh child process, so its peak RSS — ``ru_maxrss`` — is its own):
1. a seed-sized upload (``dkt simulate --users 7442``: ~2.3M rows, ~124 MB CSV) into an empty bucket -> v=1
2. a 1,000-row upload on top of that version (reads the 2.3M-row parent, merges, writes v=2)
3. a gzip bomb (12 MB expanding to 4 GiB of CSV rows) with the default caps: quarantined
4. the same bomb with DKT_INGEST_MAX_DECOMPRESSED_BYTES=256 MiB (peak memory follows that cap)
The child's RSS after its imports (pandas, pyarrow, boto3) is printed too, as the floor.
Generated inputs are cached under --work (default /tmp/dkt-bench-ingest), never in the repository.

Run: OMP_WAIT_POLICY=PASSIVE python bench/bench_ingest.py [--users 7442] [--bomb-gib 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.ports import free_port  # noqa: E402

HEADER = b"userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag\n"
BUCKET = "dkt-bench"


def child(args: argparse.Namespace) -> None:
    """One ingestion run in this process; prints one JSON line with its numbers."""
    from dkt_core.ingest import IngestConfig, ingest
    from dkt_core.ingest.layout import RAW_PREFIX
    from dkt_core.settings import IngestSettings, ReadLimits, S3Settings, load

    floor_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    r = ingest(IngestConfig.with_settings(args.run_id, RAW_PREFIX, load(IngestSettings), load(ReadLimits),
                                          settings=S3Settings(endpoint_url=args.endpoint, bucket=BUCKET)))
    wall = time.perf_counter() - t
    print(json.dumps({"wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "floor_rss_mib": floor_kib / 1024, "result": r.to_dict()}))


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("moto_server did not start")


def seed_file(work: Path, users: int) -> Path:
    path = work / f"seed_{users}.csv"
    if not path.exists():
        dkt = shutil.which("dkt", path=str(Path(sys.executable).parent)) or "dkt"
        subprocess.run([dkt, "simulate", "--users", str(users), "--seed", "0", "--out", str(path)], check=True)
    return path


def bomb_file(work: Path, gib: int) -> Path:
    path = work / f"bomb_{gib}gib.csv.gz"
    if not path.exists():
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b"u1,A060001001,A060000001,1,2020-01-01 00:00:00,7\n" * 20000
        with open(path, "wb") as f:
            f.write(comp.compress(HEADER))
            for _ in range(gib * 2**30 // len(block)):
                f.write(comp.compress(block))
            f.write(comp.flush())
    return path


def run_case(label: str, endpoint: str, run_id: str, env: dict, rows_in: int | None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "--endpoint", endpoint, "--run-id", run_id],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{label}: child failed:\n{out.stderr[-3000:]}")
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    r = doc["result"]
    rate = f"{rows_in / doc['wall_s']:>12,.0f} rows/s" if rows_in else f"{'':>19}"
    print(f"{label:<46} {doc['wall_s']:7.1f} s {rate}  peak RSS {doc['peak_rss_mib']:7.0f} MiB "
          f"(floor {doc['floor_rss_mib']:.0f})  status={r['status']} rows_added={r['rows_added']:,} "
          f"quarantined={r['objects_quarantined']}")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=7442)
    ap.add_argument("--bomb-gib", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dkt-bench-ingest"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--run-id", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import boto3
    from botocore.config import Config

    args.work.mkdir(parents=True, exist_ok=True)
    seed, bomb = seed_file(args.work, args.users), bomb_file(args.work, args.bomb_gib)
    n_rows = sum(1 for _ in open(seed, "rb")) - 1
    small = HEADER + b"".join(f"new{i % 50},A0600{i:05d},A060000001,{i % 2},2021-06-01 00:{i // 60 % 60:02d}:"
                              f"{i % 60:02d},7\n".encode() for i in range(1000))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(REPO)}
    for k in ("DKT_INGEST_MAX_OBJECT_BYTES", "DKT_INGEST_MAX_DECOMPRESSED_BYTES"):
        env.pop(k, None)  # the documented defaults
    proc, endpoint = start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench", config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        print(f"seed upload: {n_rows:,} rows, {seed.stat().st_size / 2**20:.0f} MiB CSV; "
              f"bomb: {bomb.stat().st_size / 2**20:.1f} MiB gzip -> {args.bomb_gib} GiB")
        s3.upload_file(str(seed), BUCKET, "interactions/date=2026-01-01/seed.csv")
        run_case(f"seed CSV ({n_rows / 1e6:.2f}M rows) -> v=1", endpoint, "bench-seed", env, n_rows)
        s3.put_object(Bucket=BUCKET, Key="interactions/date=2026-01-02/small.csv", Body=small)
        run_case("1,000 rows onto the seed version -> v=2", endpoint, "bench-small", env, 1000)
        s3.upload_file(str(bomb), BUCKET, "interactions/date=2026-01-03/bomb.csv.gz")
        run_case(f"gzip bomb ({args.bomb_gib} GiB) -> quarantined", endpoint, "bench-bomb", env, None)
        s3.upload_file(str(bomb), BUCKET, "interactions/date=2026-01-04/bomb.csv.gz")
        run_case("the bomb, decompressed cap 256 MiB", endpoint, "bench-bomb-256",
                 {**env, "DKT_INGEST_MAX_DECOMPRESSED_BYTES": str(256 * 2**20)}, None)
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
