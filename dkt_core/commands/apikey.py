"""`dkt api-key create NAME` | `revoke NAME` | `list`: the inference API's keys (what `make api-key` and
`make api-key-revoke` run).

The key-hash file is ``DKT_API_KEYS_FILE`` (default ``$DKT_HOME/secrets/api_keys.json``, 0600, hashes only).
A change is rolled out to a running Swarm stack at once (a new content-named Docker secret, start-first
rolling update: zero failed requests); without a stack only the file changes, and the command says so.
`create` prints the new key on its last line, once: it is stored nowhere (``--out FILE`` also writes it to a
0600 file). `rollout` rolls the file out again (after an update that failed or could not be followed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api-key", help="create, revoke or list the inference API's keys (hashes in DKT_API_KEYS_FILE)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser("create", help="make a key NAME; prints it on the last line")
    c.add_argument("name", help="a name for the key's holder (letters, digits, ._-)")
    c.add_argument("--out", type=Path, help="also write the key to this file (mode 0600)")
    r = actions.add_parser("revoke", help="revoke the key NAME (it gets 401 once rolled out)")
    r.add_argument("name", help="name of the key to revoke")
    actions.add_parser("list", help="names, creation and revocation times (never keys)")
    actions.add_parser("rollout", help="roll the key file out to the running stack again (after a failed update)")
    for q in (c, r):
        q.add_argument("--no-rollout", action="store_true", help="only update the file, even if a stack runs")
    p.set_defaults(func=cmd_api_key)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_api_key(args: argparse.Namespace) -> int:
    from dkt_core.private_files import write_private
    from dkt_core.serving.apikeys import create_key, read_records, revoke_key
    from dkt_core.settings import DeploySettings, ServingSettings, load

    keys_file = load(ServingSettings).api_keys_file
    if args.action == "list":
        records = read_records(keys_file)
        print(json.dumps({n: {"created_at": r.created_at, "revoked_at": r.revoked_at} for n, r in records.items()},
                         indent=2))
        return 0
    key = None
    if args.action == "create":
        key = create_key(keys_file, args.name)
        if args.out:
            write_private(args.out, (key + "\n").encode())
        _say(f"created API key {args.name!r} (its hash is in {keys_file}); the key is shown once, below")
    elif args.action == "revoke":
        rec = revoke_key(keys_file, args.name)
        _say(f"revoked API key {args.name!r} at {rec.revoked_at} in {keys_file}")
    ok = True
    if not getattr(args, "no_rollout", False):
        from dkt_core.deploy.apikeys import roll_out_keys

        deploy = load(DeploySettings)
        result = roll_out_keys(keys_file, deploy.service, deploy.stack, timeout_s=deploy.rollout_timeout_s)
        _say(result.message)
        ok = result.ok
    if key is not None:
        print(key, flush=True)  # the last line: `make api-key` callers take it from there
    return 0 if ok else 1
