"""Command line of the web client: ``python -m dkt_core.webclient {build-bank,flush}``.

- ``build-bank --data SEED.csv[.gz]|.parquet [--generate] [--out PATH] [--max-items-per-test N]``: the
  answer key is an HMAC of each item id under the secret in ``DKT_CLIENT_ANSWER_KEY_FILE`` (created 0600
  when absent); ``--generate`` writes real questions for the items (``content``: the demo catalog);
  without it items say "Item text is not available". The bank is written 0600.
- ``build-bank --import BANK.csv|.json [--out PATH]``: a real bank in the documented format
  (docs/client.md); each rejected row is printed with its reason (exit 1), the valid rows are written.
- ``flush``: seal orphaned batches and put every sealed batch to S3 once (what fails stays spooled).
The app itself is served by gunicorn (``make client``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dkt_core.private_files import read_or_create_secret
from dkt_core.settings import ClientSettings, S3Settings, load
from dkt_core.webclient.bank import bank_from_content, build_bank, read_seed, with_generated_content
from dkt_core.webclient.content import ContentFileError, read_content_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dkt_core.webclient")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-bank", help="question bank + answer key from seed-format data, or import a bank")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="seed-format CSV (optionally .gz) or Parquet: the items to use")
    src.add_argument("--import", dest="import_file", type=Path,
                     help="a bank file (.csv or .json: item_id, text, choice_a..choice_d, answer, explanation, "
                          "tag, tag_name, test, test_name, subject, grade)")
    b.add_argument("--generate", action="store_true",
                   help="with --data: generated questions (text, 4 choices, explanation) for every item")
    b.add_argument("--out", type=Path, default=None, help="bank path (default: $DKT_CLIENT_BANK)")
    b.add_argument("--max-items-per-test", type=int, default=10, help="with --data: items kept per test (default 10)")
    sub.add_parser("flush", help="put sealed spool batches to S3 now")
    args = parser.parse_args(argv)
    settings = ClientSettings.from_env()

    if args.cmd == "build-bank" and args.import_file is not None:
        if args.generate:
            parser.error("--generate goes with --data; an imported bank brings its own text")
        try:
            rows, errors = read_content_file(args.import_file)
        except ContentFileError as e:
            print(f"build-bank: {e}", file=sys.stderr)
            return 2
        for line in errors:
            print(f"build-bank: {args.import_file}: {line}", file=sys.stderr)
        if not rows:
            print(f"build-bank: no valid row in {args.import_file}; nothing written", file=sys.stderr)
            return 2
        bank = bank_from_content(rows, source=args.import_file.name)
        out = args.out or settings.bank_path
        bank.save(out)
        print(f"wrote {out}: {len(bank.items)} items in {len(bank.tests)} tests"
              + (f"; {len(errors)} row(s) rejected (listed above): fix them and import again" if errors else ""))
        return 1 if errors else 0

    if args.cmd == "build-bank":
        if not args.data.exists():
            parser.error(f"--data {args.data} does not exist")
        secret = read_or_create_secret(settings.answer_key_path, what="answer-key secret")
        bank = build_bank(read_seed(args.data), answer_secret=secret, max_items_per_test=args.max_items_per_test,
                          source=args.data.name)
        if args.generate:
            bank = with_generated_content(bank)
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
    result = FlushWorker(spool, interval_s=settings.flush_interval_s, settings=load(S3Settings),
                         create_bucket=settings.create_bucket, committed=committed).run_once()
    print(f"sent {len(result.sent)} batch(es); {result.pending} pending" + (f"; {result.error}" if result.error else ""))
    return 1 if result.error else 0


if __name__ == "__main__":
    sys.exit(main())
