"""The `exchange` console script: one subcommand per process or tool.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
they are imported only when chosen, so `exchange admin` does not pay for aiohttp.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from exchange.cli import settings

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("exchange.cli.up", "run a matcher and a gateway together on this machine"),
    "matcher": ("exchange.matcher.main", "run the single-writer matcher process"),
    "gateway": ("gateway.main", "run a gateway (WebSocket, REST, FIX) in front of a matcher"),
    "admin": ("exchange.cli.admin", "operator commands: accounts, keys, deposits, halts"),
    "secrets-key": ("exchange.cli.secrets_key", "make the key that seals API secrets at rest"),
}


class DefaultsFormatter(argparse.HelpFormatter):
    """--help shows every option's default, also for options without a help text."""

    def add_argument(self, action: argparse.Action) -> None:
        default = action.default
        if (action.option_strings and default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in (action.help or "")):
            action.help = f"{action.help or ''} (default: %(default)s)".lstrip()
        super().add_argument(action)


def parse_args(args_list: Sequence[str]) -> argparse.Namespace:
    """The parsed command line (exits with usage on a bad one), without running anything."""
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="exchange", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=DefaultsFormatter)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub_parser)
            if name in settings.TABLES:
                settings.add_argument(sub_parser)
                settings.apply(sub_parser, name, args_list)
    return parser.parse_args(list(args_list))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    code: int = module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
