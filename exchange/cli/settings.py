"""One TOML settings file for `exchange up` and `exchange gateway`: `--settings FILE`.

    [gateway]            # options of `exchange gateway`: ports, limits, admin, Redis, FIX...
    port = 8080          # used by `exchange gateway` and by `exchange up` alike
    order-limit = 200
    admin-port = 9000
    admin-token-file = "/etc/exchange/admin-token"

    [up]                 # options of `exchange up` only
    data-dir = "/var/lib/exchange"
    max-restarts = 5

Keys are the long option names (`order-limit` or `order_limit`). A value becomes the
option's default: a flag given on the command line overrides it, and `--help` shows the
defaults with the file applied. `exchange up` reads [gateway] then [up]; `exchange gateway`
reads [gateway]. An unknown table or key, or a value of the wrong type, is refused with one
line naming the file, the table and the key.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OPTION = "--settings"
TABLES: dict[str, tuple[str, ...]] = {"gateway": ("gateway",), "up": ("gateway", "up")}
# [gateway] keys that describe one gateway process only: `exchange up` runs its own matcher
# and names its gateway itself, so a shared file may hold them.
_NOT_FOR_UP = {"matcher", "gateway_id"}


class SettingsError(ValueError):
    """The settings file is unusable; the message is one line."""


def settings_path(argv: Sequence[str]) -> Path | None:
    """The value of --settings in `argv` (the last one given), if any."""
    found: Path | None = None
    for i, arg in enumerate(argv):
        if arg == OPTION and i + 1 < len(argv):
            found = Path(argv[i + 1])
        elif arg.startswith(OPTION + "="):
            found = Path(arg.split("=", 1)[1])
    return found


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(OPTION, metavar="FILE", default=None,
                        help="TOML settings: [gateway] (and [up] for exchange up) hold option "
                        "values; flags override them")


def _convert(path: Path, where: str, action: argparse.Action, value: Any) -> Any:
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise SettingsError(f"{path}: {where}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool | dict | list) or (action.type is int and isinstance(value, float)):
        raise SettingsError(f"{path}: {where}: {value!r} is not valid here")
    if action.type is None:
        if not isinstance(value, str):
            raise SettingsError(f"{path}: {where}: expected a string, got {value!r}")
        converted: Any = value
    else:
        try:
            converted = action.type(value)  # type: ignore[operator]
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{path}: {where}: {value!r} is not valid ({exc})") from None
    if action.choices is not None and converted not in action.choices:
        raise SettingsError(f"{path}: {where}: {value!r} is not one of "
                            f"{', '.join(map(str, action.choices))}")
    return converted


def load(path: Path, command: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The option values `path` gives `command`, keyed by argparse dest, checked and typed."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"gateway", "up"})
    if unknown:
        raise SettingsError(f"{path}: unknown table [{unknown[0]}] (known: [gateway], [up])")
    actions = {a.dest: a for a in parser._actions
               if a.option_strings and a.dest not in ("help", "settings")}
    values: dict[str, Any] = {}
    for table in TABLES[command]:
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise SettingsError(f"{path}: [{table}] must be a table")
        for key, value in section.items():
            dest = key.replace("-", "_")
            where = f"[{table}] {key}"
            if dest not in actions:
                if command == "up" and table == "gateway" and dest in _NOT_FOR_UP:
                    continue
                raise SettingsError(f"{path}: {where}: not an option of exchange {command}")
            values[dest] = _convert(path, where, actions[dest], value)
    return values


def apply(parser: argparse.ArgumentParser, command: str, argv: Sequence[str]) -> None:
    """Make the settings file named in `argv` (if any) the parser's defaults."""
    if command not in TABLES:
        return
    path = settings_path(argv)
    if path is None:
        return
    try:
        values = load(path, command, parser)
    except SettingsError as exc:
        parser.error(str(exc))
    parser.set_defaults(**values)
