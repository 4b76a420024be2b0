"""Files of the data directory named `<prefix><20-digit seq><suffix>` (journal, snapshots)."""

from __future__ import annotations

from pathlib import Path


def numbered_files(data_dir: Path, prefix: str, suffix: str) -> list[tuple[int, Path]]:
    """(seq, path) of every file named prefix + digits + suffix, in ascending seq order."""
    out: list[tuple[int, Path]] = []
    for path in data_dir.iterdir():
        name = path.name
        if name.startswith(prefix) and name.endswith(suffix):
            digits = name[len(prefix) : -len(suffix)]
            if digits.isdigit():
                out.append((int(digits), path))
    out.sort()
    return out
