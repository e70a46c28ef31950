"""The ``dkt`` command line: one subcommand module per stage (dkt_core/commands/).

Errors the user can fix (bad file, bad option, missing artifact) print one sentence on stderr and
exit 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dkt_core import __version__

# Each module registers its subcommands; add a stage by adding its module here.
COMMAND_MODULES = [
    "dkt_core.commands.data",
    "dkt_core.commands.model",
    "dkt_core.commands.package",
    "dkt_core.commands.ingest",
    "dkt_core.commands.settings",
    "dkt_core.commands.apikey",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it has none worth showing or says it already)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, False, [], "", argparse.SUPPRESS)
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _finish(parser: argparse.ArgumentParser) -> None:
    """Every command gets the formatter and a description (its one-line help when it has no longer one)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description and helps.get(name):
                    child.description = helps[name][0].upper() + helps[name][1:] + "."
                _finish(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dkt", description="dkt-platform: knowledge-tracing data, models and deployment")
    parser.add_argument("--version", action="version", version=f"dkt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _finish(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from dkt_core.data.io import DataFileError

    try:
        return int(args.func(args) or 0)
    except DataFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        if args.verbose:
            raise
        msg = exc.args[0] if exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
