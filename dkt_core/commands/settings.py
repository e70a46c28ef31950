"""`dkt settings`: every setting the platform reads, as loaded from this environment (a bad value is named at
once), or `--markdown`: the configuration table the README holds (generated from dkt_core/settings.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

START, END = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settings", help="show the loaded settings (or --markdown: the README's configuration table)")
    p.add_argument("--markdown", action="store_true", help="print the configuration table (README.md) and exit")
    p.add_argument("--write", type=Path, metavar="README",
                   help="replace the table between the settings-table markers of this file")
    p.set_defaults(func=cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    from dkt_core import settings

    if args.write:
        text = args.write.read_text()
        if START not in text or END not in text:
            raise ValueError(f"{args.write} has no {START.strip()} ... {END} markers to write the table between")
        head, rest = text.split(START, 1)
        args.write.write_text(head + START + settings.markdown_table() + END + rest.split(END, 1)[1])
        print(f"wrote the settings table into {args.write}")
        return 0
    if args.markdown:
        print(settings.markdown_table(), end="")
        return 0
    loaded = {name: asdict(value) for name, value in settings.load_all().items()}
    print(json.dumps(loaded, indent=2, default=str))
    return 0
