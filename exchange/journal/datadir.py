"""The data directory's layout, the same for every command that takes --data-dir.

    DATA_DIR/
      EXCHANGE_DATA              marks the directory as an exchange's own (format, created by)
      LOCK                       held by the running matcher (flock)
      journal-<seq>.log          the journal segments
      snapshot-<seq>.snap        snapshots (and .snapshot-<seq>.tmp while one is written)
      matcher.log                the matcher's log when `exchange up` runs it
      matcher.sock               the link socket of `exchange up` (when the path is short enough)
      demo-credentials.json      `exchange up --demo` accounts
      fix-store/                 `exchange up --fix-port`: FIX sessions' numbers and messages
      instruments.json           the asset and instrument parameters the state was written
                                 with (exchange.matcher.params)

A matcher refuses a directory that is neither empty nor its own: pointed by mistake at a home
directory, or at the older `exchange up` layout that kept the journal in DATA_DIR/matcher, it
would otherwise start an empty exchange beside the real one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = "EXCHANGE_DATA"
FORMAT = 1
# Names that may sit in a directory before it is marked (written by older versions, or by
# `exchange up` before its matcher first starts).
_KNOWN_NAMES = {"LOCK", "matcher.log", "matcher.sock", "demo-credentials.json", "fix-store",
                "instruments.json"}
_KNOWN_PREFIXES = ("journal-", "snapshot-", ".snapshot-", f".{MARKER}", ".instruments.json")


class NotADataDir(RuntimeError):
    """The directory is not an exchange data directory; the message is one line."""


def _foreign(names: list[str]) -> list[str]:
    return sorted(n for n in names if n not in _KNOWN_NAMES and not n.startswith(_KNOWN_PREFIXES))


def _check_marker(data_dir: Path) -> None:
    """Raise NotADataDir unless DATA_DIR/EXCHANGE_DATA is readable and of this format."""
    marker = data_dir / MARKER
    try:
        version = json.loads(marker.read_text())["format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotADataDir(f"{marker} is unreadable ({exc}); is {data_dir} "
                          "an exchange data directory?") from None
    if version != FORMAT:
        raise NotADataDir(f"{data_dir} has data-dir format {version}; this version "
                          f"reads format {FORMAT}")


def claim(data_dir: Path) -> None:
    """Check that `data_dir` is an exchange data directory, creating and marking it if new.

    Raises NotADataDir (nothing written) when it holds anything else.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / MARKER
    if marker.exists():
        _check_marker(data_dir)
        return
    names = os.listdir(data_dir)
    legacy = data_dir / "matcher"
    if "matcher" in names and legacy.is_dir():
        raise NotADataDir(
            f"{data_dir} has the older `exchange up` layout (journal in {legacy}); move the "
            f"files of {legacy} into {data_dir} and remove the empty {legacy}")
    foreign = _foreign(names)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise NotADataDir(f"{data_dir} is not an exchange data directory (it holds {shown}); "
                          "give an empty or new directory, or an exchange's own")
    tmp = data_dir / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT}) + "\n")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, marker)


def check_readable(data_dir: Path) -> None:
    """Check, writing nothing, that `data_dir` holds an exchange's data: for read-only tools.

    A marked directory passes; so does an unmarked one holding journal segments or snapshots
    (written before the marker existed; the matcher marks it at its next start). Anything else
    raises NotADataDir: replaying a mistyped path must not print the state of an empty exchange.
    """
    if not data_dir.is_dir():
        raise NotADataDir(f"{data_dir} does not exist or is not a directory")
    if (data_dir / MARKER).exists():
        _check_marker(data_dir)
        return
    names = os.listdir(data_dir)
    if not any(n.startswith(("journal-", "snapshot-")) for n in names):
        raise NotADataDir(f"{data_dir} is not an exchange data directory (no {MARKER}, "
                          "no journal, no snapshot)")
