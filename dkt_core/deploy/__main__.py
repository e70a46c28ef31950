"""CLI: `python -m dkt_core.deploy deploy [--tag dkt-model:<v>]` | `undeploy` (what make deploy runs)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dkt_core.deploy")
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("deploy", help="build, push and roll out the packaged model (default: newest)")
    d.add_argument("--tag", help="dkt-model:<version> in the BentoML store")
    sub.add_parser("undeploy", help="remove the Swarm stack")
    args = parser.parse_args(argv)

    from dkt_core.deploy.images import ImageError
    from dkt_core.deploy.pipeline import deploy, undeploy

    try:
        if args.cmd == "undeploy":
            undeploy()
            return 0
        outcome = deploy(args.tag)
    except (ImageError, TimeoutError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(f"served version: {outcome.served_version}  image: {outcome.image}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
