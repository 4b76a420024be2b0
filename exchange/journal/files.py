"""Files of the data directory named `<prefix><20-digit seq><suffix>` (journal, snapshots)."""

from __future__ import annotations

import os
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


# The data directory holds API keys (sealed, see docs/SECURITY.md), balances and every order:
# only the owner may read it, whatever the umask.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def secure_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700; every file in it becomes 0600.

    Files left by an older version with looser modes are tightened on start-up.
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    for entry in path.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, PRIVATE_FILE_MODE)
    return path


def open_private(path: Path | str, flags: int) -> int:
    """os.open with mode 0600 enforced even when the file already existed."""
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd
