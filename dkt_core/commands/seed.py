"""`dkt seed`: simulate an interaction log and upload it under the raw prefix, where ingestion finds it.

Replaces the inline Python of ``make s3-seed``: the bucket is created if missing, the key is built by the
one key layout (``dkt_core.ingest.layout.raw_key``), the log is the simulator's (``dkt simulate``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from inspect import cleandoc
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seed", help="upload a simulated interaction log under the raw prefix of the bucket",
                       description=cleandoc(cmd_seed.__doc__))
    p.add_argument("--users", type=int, default=1000, help="number of simulated students")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (same seed, same log)")
    p.add_argument("--user-offset", type=int, default=0, help="added to every simulated userID (new students)")
    p.add_argument("--day", default="seed", help="the date= part of the key: YYYY-MM-DD or a label (default: seed)")
    p.add_argument("--name", help="object name (default: initial-u<USERS>-s<SEED>.csv)")
    p.add_argument("--prefix", default=None, help="raw prefix (default: interactions/)")
    p.add_argument("--out", type=Path, help="also keep the uploaded CSV here (make client-bank builds its bank from it)")
    p.add_argument("--json", action="store_true", help="print one JSON object (bucket, key, rows, users)")
    p.set_defaults(func=cmd_seed)


def cmd_seed(args: argparse.Namespace) -> int:
    """Simulate USERS students and upload their log (CSV) as one raw object interactions/date=DAY/NAME.csv in the
    bucket of DKT_S3_BUCKET at DKT_S3_ENDPOINT_URL (created if missing). Uploading the same users, seed and day
    again writes the same key."""
    from dkt_core.data.simulate import SimulationConfig, simulate
    from dkt_core.data.validate import to_seed_csv
    from dkt_core.ingest import layout
    from dkt_core.storage.objects import put_bytes
    from dkt_core.storage.s3 import S3Settings, ensure_bucket, s3_client

    if args.users < 1:
        raise ValueError("--users must be at least 1")
    if args.user_offset < 0:
        raise ValueError("--user-offset must be >= 0")
    name = args.name or f"initial-u{args.users}-s{args.seed}.csv"
    key = layout.raw_key(name, day=args.day, prefix=args.prefix or layout.RAW_PREFIX)
    frame = simulate(SimulationConfig(users=args.users, seed=args.seed))
    if args.user_offset:
        frame["userID"] = (frame["userID"].astype(int) + args.user_offset).astype(str)
    buf = io.StringIO()
    to_seed_csv(frame, buf)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(buf.getvalue())
    settings = S3Settings.from_env()
    client = s3_client(settings)
    ensure_bucket(client, settings.bucket)
    put_bytes(client, settings.bucket, key, buf.getvalue().encode(), content_type="text/csv")
    out = {"bucket": settings.bucket, "key": key, "rows": int(len(frame)), "users": int(frame["userID"].nunique()),
           "endpoint": settings.endpoint_url or "AWS", "local_copy": str(args.out) if args.out else None}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"S3: uploaded {out['rows']} interactions of {out['users']} users to "
              f"s3://{out['bucket']}/{out['key']} ({out['endpoint']})", file=sys.stderr)
    return 0
