"""`dkt ingest`: one ingestion run against the configured S3 — the function the DAG's ingest task calls.

Operators use it for backfills and repairs without Airflow. Exit 0 when the run completed (quarantined
objects are not an error), 2 on a usage or infrastructure error (one sentence on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime

SUMMARY_FIELDS = ("status", "data_version", "data_uri", "rows_added", "rows_rejected", "objects_ingested",
                  "objects_quarantined")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="ingest new raw S3 objects into a new curated version (as the DAG's ingest task)",
        description="Exit 0: run completed (objects may have been quarantined); 2: usage or S3 error. "
                    "S3 endpoint and credentials come from DKT_S3_ENDPOINT_URL and the AWS chain.")
    p.add_argument("--bucket", default=None, help="bucket (default: DKT_S3_BUCKET, else dkt-platform)")
    p.add_argument("--prefix", default="interactions/", help="raw upload prefix (default: interactions/)")
    p.add_argument("--run-id", default=None,
                   help="idempotency key: rerunning a committed run id replays its result "
                        "(default: a new manual__<utc time>_<8 hex> id)")
    p.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    p.set_defaults(func=cmd_ingest)


def new_run_id() -> str:
    return f"manual__{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S')}_{uuid.uuid4().hex[:8]}"


def cmd_ingest(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from dkt_core.ingest import IngestConfig, ingest, layout
    from dkt_core.ingest.errors import IngestError
    from dkt_core.settings import IngestSettings, ReadLimits, S3Settings, load

    settings = load(S3Settings)  # the edge: every setting of the run is read here and passed down
    if args.bucket is not None:
        settings = replace(settings, bucket=args.bucket)
    run_id = args.run_id or new_run_id()
    try:
        layout.check_run_id(run_id)
        layout.check_prefix(args.prefix)
        result = ingest(IngestConfig.with_settings(run_id, args.prefix, load(IngestSettings), load(ReadLimits),
                                                   settings=settings))
    except (IngestError, ValueError, FileNotFoundError) as err:
        # S3 down or throttling, lease held/lost, manifest corrupt, missing bucket, bad option
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as err:  # e.g. access denied: not retriable, say what S3 said
        print(f"error: S3 refused the ingestion run ({err}); check the credentials and bucket policy",
              file=sys.stderr)
        return 2
    doc = result.to_dict()
    if args.json:
        print(json.dumps(doc))
    else:
        print(" ".join(f"{k}={doc[k]}" for k in SUMMARY_FIELDS) + f" run_id={result.run_id}")
        if result.reason:
            print(result.reason)
    return 0
