"""`dkt validate`, `dkt simulate` and (registered from ``commands.seed``) `dkt seed`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a log against the data contract; quarantine bad rows",
                       description="Exit 0: all rows valid; 1: some rows rejected; 2: file unusable. The size "
                                   "caps DKT_INGEST_MAX_OBJECT_BYTES, DKT_INGEST_MAX_DECOMPRESSED_BYTES and "
                                   "DKT_INGEST_MAX_COMPRESSION_RATIO apply as in ingestion.")
    p.add_argument("path", type=Path, help="CSV, CSV.gz or Parquet in the seed format")
    p.add_argument("--quarantine", type=Path, metavar="DIR",
                   help="write valid.csv, rejected.csv (with reasons) and report.json here")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    p.set_defaults(func=cmd_validate)

    s = sub.add_parser("simulate", help="generate a synthetic log in the seed format",
                       description="Simulate students answering tests (item difficulty, skill mastery, learning) and "
                                   "write the log in the seed format; for demos and tests.")
    s.add_argument("--users", type=int, default=1000, help="number of simulated students")
    s.add_argument("--seed", type=int, default=0, help="random seed of the simulation (same seed, same log)")
    s.add_argument("--out", type=Path, required=True, help=".csv, .csv.gz or .parquet")
    s.add_argument("--format", choices=("auto", "csv", "parquet"), default="auto",
                   help="auto: from the --out suffix; parquet: written block by block (a few GB of memory "
                        "whatever --users, e.g. --users 300000 for ~95 M rows); csv: the whole log in memory")
    s.set_defaults(func=cmd_simulate)

    from dkt_core.commands import seed

    seed.register(sub)  # the simulator's upload twin


def cmd_validate(args: argparse.Namespace) -> int:
    from dkt_core.data.io import ReadLimits
    from dkt_core.data.validate import validate_file

    # the same caps as ingestion, so a file passes here exactly when it would be ingested
    result = validate_file(args.path, limits=ReadLimits.from_env())
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    summary = result.summary()
    if args.quarantine:
        result.write_quarantine(args.quarantine)
        summary["quarantine"] = str(args.quarantine)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.path}: {summary['rows_read']} rows read, {summary['valid']} valid, "
              f"{summary['rejected']} rejected, {summary['duplicates']} duplicates dropped")
        for reason, n in summary["reasons"].items():
            print(f"  {n:>8}  {reason}")
    return 0 if summary["rejected"] == 0 else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from dkt_core.data.simulate import SimulationConfig, simulate, write_log, write_log_chunked

    if args.users < 1:
        raise ValueError("--users must be at least 1")
    fmt = args.format
    if fmt == "auto":
        fmt = "parquet" if args.out.name.endswith(".parquet") else "csv"
    elif fmt == "parquet" and not args.out.name.endswith(".parquet"):
        raise ValueError(f"--format parquet writes Parquet: name --out with a .parquet suffix, not {args.out.name}")
    elif fmt == "csv" and args.out.name.endswith(".parquet"):
        raise ValueError(f"--format csv writes CSV: name --out .csv or .csv.gz, not {args.out.name}")
    config = SimulationConfig(users=args.users, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        rows = write_log_chunked(config, args.out)
    else:
        frame = simulate(config)
        write_log(frame, str(args.out))
        rows = len(frame)
    print(f"wrote {rows} interactions of {args.users} users to {args.out}", file=sys.stderr)
    return 0
