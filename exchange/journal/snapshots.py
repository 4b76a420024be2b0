"""Engine snapshots on disk, written atomically, each naming the journal seq it covers.

File `snapshot-<seq, 20 digits>.snap`:
    MAGIC (8 bytes) | u64 seq | u64 length | u32 crc32(data) | data (Engine.snapshot() bytes)
Written as `.snapshot-<seq>.tmp`, fsynced, renamed, then the directory fsynced: a crash at any
point leaves either the complete new file or none, and the older snapshots stay usable.
Leftover temp files from a crash are removed at start. `write` and `prune` run in a worker
thread; nothing here touches the event loop.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from exchange.journal.files import numbered_files, open_private
from exchange.journal.log import fsync_dir

MAGIC = b"XSNAP01\n"
HEAD = struct.Struct(">QQI")  # seq, data length, crc32(data)
_PREFIX = "snapshot-"
_SUFFIX = ".snap"
_TMP_PREFIX = ".snapshot-"
KEEP = 2  # the newest and the one before it, in case the newest turns out damaged


def snapshot_name(seq: int) -> str:
    return f"{_PREFIX}{seq:020d}{_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    data: bytes
    path: Path


def list_snapshots(data_dir: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every snapshot file, newest first."""
    return numbered_files(data_dir, _PREFIX, _SUFFIX)[::-1]


def read_snapshot(path: Path, seq: int) -> Snapshot | str:
    """The snapshot in `path`, or why it is unusable."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        return f"unreadable: {exc}"
    head_end = len(MAGIC) + HEAD.size
    if len(blob) < head_end or blob[: len(MAGIC)] != MAGIC:
        return "bad header"
    file_seq, length, crc = HEAD.unpack_from(blob, len(MAGIC))
    if file_seq != seq:
        return f"header says seq {file_seq}, file name says {seq}"
    if len(blob) != head_end + length:
        return f"length {len(blob) - head_end} does not match the header's {length}"
    data = blob[head_end:]
    if zlib.crc32(data) != crc:
        return "checksum mismatch"
    return Snapshot(seq=seq, data=data, path=path)


class SnapshotStore:
    def __init__(self, data_dir: Path, keep: int = KEEP) -> None:
        self.data_dir = data_dir
        self.keep = keep

    def remove_temp_files(self) -> list[Path]:
        """Temp files are half-written snapshots from a crash: never valid, always removable."""
        removed = [p for p in self.data_dir.iterdir() if p.name.startswith(_TMP_PREFIX)]
        for path in removed:
            path.unlink()
        return removed

    def newest_valid(self) -> tuple[Snapshot | None, list[tuple[Path, str]]]:
        """The newest snapshot that checks out, and every newer one that did not (with why)."""
        rejected: list[tuple[Path, str]] = []
        for seq, path in list_snapshots(self.data_dir):
            got = read_snapshot(path, seq)
            if isinstance(got, Snapshot):
                return got, rejected
            rejected.append((path, got))
        return None, rejected

    def write(self, seq: int, data: bytes) -> Path:
        """Write atomically; returns the final path. Runs in a worker thread."""
        final = self.data_dir / snapshot_name(seq)
        tmp = self.data_dir / f"{_TMP_PREFIX}{seq:020d}.tmp"
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            head = MAGIC + HEAD.pack(seq, len(data), zlib.crc32(data))
            for chunk in (head, data):
                view = memoryview(chunk)
                done = 0
                while done < len(chunk):
                    done += os.write(fd, view[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        fsync_dir(self.data_dir)
        return final

    def prune(self) -> tuple[int, list[Path]]:
        """Keep the newest `keep` snapshots; returns the seq the oldest kept one covers.

        Journal segments up to that seq are no longer needed, even if the newest snapshot
        later proves damaged.
        """
        snaps = list_snapshots(self.data_dir)
        removed: list[Path] = []
        for _, path in snaps[self.keep :]:
            path.unlink()
            removed.append(path)
        if removed:
            fsync_dir(self.data_dir)
        kept = snaps[: self.keep]
        return (kept[-1][0] if len(kept) == self.keep else 0), removed
