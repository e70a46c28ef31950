"""Command line of the web client: ``python -m dkt_core.webclient {build-bank,flush}``.

- ``build-bank --data SEED.csv[.gz]|.parquet [--out PATH] [--max-items-per-test N]``: the answer key is an
  HMAC of each item id under the secret in ``DKT_CLIENT_ANSWER_KEY_FILE`` (created 0600 when absent); the
  bank is written 0600.
- ``flush``: seal orphaned batches and put every sealed batch to S3 once (what fails stays spooled).
The app itself is served by gunicorn (``make client``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dkt_core.private_files import read_or_create_secret
from dkt_core.webclient.bank import build_bank, read_seed
from dkt_core.webclient.settings import ClientSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dkt_core.webclient")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-bank", help="question bank + answer key from seed-format data")
    b.add_argument("--data", type=Path, required=True, help="seed-format CSV (optionally .gz) or Parquet")
    b.add_argument("--out", type=Path, default=None, help="bank path (default: $DKT_CLIENT_BANK)")
    b.add_argument("--max-items-per-test", type=int, default=10)
    sub.add_parser("flush", help="put sealed spool batches to S3 now")
    args = parser.parse_args(argv)
    settings = ClientSettings.from_env()

    if args.cmd == "build-bank":
        if not args.data.exists():
            parser.error(f"--data {args.data} does not exist")
        secret = read_or_create_secret(settings.answer_key_path, what="answer-key secret")
        bank = build_bank(read_seed(args.data), answer_secret=secret, max_items_per_test=args.max_items_per_test,
                          source=args.data.name)
        out = args.out or settings.bank_path
        bank.save(out)
        print(f"wrote {out}: {len(bank.items)} items in {len(bank.tests)} tests")
        return 0

    from dkt_core.webclient.flusher import FlushWorker
    from dkt_core.webclient.history import StateStore
    from dkt_core.webclient.spool import Spool

    spool = Spool(settings.spool_dir, max_rows=settings.spool_max_rows, max_age_s=settings.spool_max_age_s)
    # the state database judges the last row of a killed worker's batch (committed or not)
    committed = StateStore(settings.state_db).has_row if settings.state_db.exists() else None
    result = FlushWorker(spool, interval_s=settings.flush_interval_s, create_bucket=settings.create_bucket,
                         committed=committed).run_once()
    print(f"sent {len(result.sent)} batch(es); {result.pending} pending" + (f"; {result.error}" if result.error else ""))
    return 1 if result.error else 0


if __name__ == "__main__":
    sys.exit(main())
