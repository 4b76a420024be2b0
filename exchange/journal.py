"""The append-only command journal: segment files of checksummed, length-framed records.

Layout of a data directory:
    journal-<first seq, 20 digits>.log   segments, in seq order, contiguous
Each segment starts with the 8-byte MAGIC, then records:
    u32 length of the body | u32 crc32 of the body | body = u64 seq | u64 ts | command msgpack
(all big-endian). The command bytes are those the gateway sent, never re-encoded.

Writing: `encode_batch` builds the bytes of one batch on the event loop, `Journal.write` copies
them into the page cache, and `Journal.sync` (one fdatasync for the whole batch: group commit)
runs in the journal's single worker thread. Rotation (create a segment, fsync the directory)
happens in that thread too, through `Journal.append`: a new segment, named after the batch's
first seq, once the current one passed `segment_bytes`.

Reading (`scan_journal`) is strict: records must be contiguous in seq across segments. A bad
record at the very tail of the last segment (torn write) is reported as `torn` so the caller
truncates it; any other damage raises `JournalCorrupt` naming the file and offset.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exchange.data_files import numbered_files

MAGIC = b"XJRNL01\n"
HEADER = struct.Struct(">II")  # body length, crc32(body)
SEQ_TS = struct.Struct(">QQ")
RECORD_OVERHEAD = HEADER.size + SEQ_TS.size
MAX_COMMAND_BYTES = 64 * 1024  # commands are tiny; anything bigger is damage, not data
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_PREFIX = "journal-"
_SUFFIX = ".log"


class JournalCorrupt(RuntimeError):
    """Damage before the tail: recovery must stop, nothing may be skipped."""


def segment_name(first_seq: int) -> str:
    return f"{_PREFIX}{first_seq:020d}{_SUFFIX}"


def list_segments(data_dir: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment, in seq order."""
    return numbered_files(data_dir, _PREFIX, _SUFFIX)


def encode_record(seq: int, ts: int, command: bytes) -> bytes:
    body_head = SEQ_TS.pack(seq, ts)
    crc = zlib.crc32(command, zlib.crc32(body_head))
    return HEADER.pack(SEQ_TS.size + len(command), crc) + body_head + command


def encode_batch(first_seq: int, ts: int, commands: list[bytes]) -> bytes:
    """The journal bytes of consecutive commands first_seq, first_seq+1, ... sharing `ts`."""
    parts: list[bytes] = []
    append = parts.append
    pack_header = HEADER.pack
    pack_seq_ts = SEQ_TS.pack
    crc32 = zlib.crc32
    seq = first_seq
    for command in commands:
        body = pack_seq_ts(seq, ts) + command
        append(pack_header(len(body), crc32(body)))
        append(body)
        seq += 1
    return b"".join(parts)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: int
    command: bytes
    path: Path
    offset: int


@dataclass(slots=True)
class TornTail:
    """A damaged end of the last segment: truncate `path` to `offset` before appending."""

    path: Path
    offset: int
    size: int
    reason: str


@dataclass(slots=True)
class ScanResult:
    last_seq: int = 0
    last_ts: int = 0
    records: int = 0
    torn: TornTail | None = None
    # The seq the last segment's next record must carry (its last record + 1).
    last_segment_next: int = 0
    segments: list[tuple[int, Path]] = field(default_factory=list)


def _parse_at(data: bytes, off: int) -> tuple[int, int, bytes, int] | str:
    """(seq, ts, command, next offset) of the record at `off`, or why it is not valid."""
    if len(data) - off < HEADER.size:
        return "truncated record header"
    length, crc = HEADER.unpack_from(data, off)
    if length < SEQ_TS.size or length > SEQ_TS.size + MAX_COMMAND_BYTES:
        return f"impossible record length {length}"
    end = off + HEADER.size + length
    if end > len(data):
        return "record runs past the end of the file"
    with memoryview(data) as view:
        body = view[off + HEADER.size : end]
        if zlib.crc32(body) != crc:
            return "checksum mismatch"
        seq, ts = SEQ_TS.unpack_from(body)
        command = bytes(body[SEQ_TS.size :])
    return seq, ts, command, end


def _valid_record_after(data: bytes, start: int, min_seq: int) -> int | None:
    """Offset of any checksum-valid record with seq >= min_seq at or after `start`.

    Used only on the error path to tell a torn tail (nothing valid follows) from damage in the
    middle (valid records follow). Byte-by-byte, so it costs about a second per few MB.
    """
    for off in range(start, len(data) - RECORD_OVERHEAD + 1):
        parsed = _parse_at(data, off)
        if not isinstance(parsed, str) and parsed[0] >= min_seq:
            return off
    return None


def scan_journal(data_dir: Path, after_seq: int = 0) -> Iterator[Record | ScanResult]:
    """Yield every record with seq > after_seq, in order, then one final ScanResult.

    Raises JournalCorrupt for damage that is not a torn tail, and for gaps in the sequence.
    """
    result = ScanResult(last_seq=after_seq)
    segments = list_segments(data_dir)
    result.segments = segments
    expected = after_seq + 1  # the next seq we must see (records <= after_seq are covered)
    first_seen = False
    for index, (first_seq, path) in enumerate(segments):
        is_last = index == len(segments) - 1
        # A segment that ends before what the snapshot covers is not needed (not yet pruned).
        if not is_last and segments[index + 1][0] <= after_seq + 1:
            continue
        data = path.read_bytes()
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            if is_last and MAGIC.startswith(data[: len(MAGIC)]) and len(data) <= len(MAGIC):
                # Crash while creating the segment: it holds no record at all.
                result.torn = TornTail(path, 0, len(data), "segment header incomplete")
                break
            raise JournalCorrupt(f"{path}: bad segment header (offset 0)")
        off = len(MAGIC)
        seg_seq = first_seq
        first_in_segment = True
        while off < len(data):
            parsed = _parse_at(data, off)
            if isinstance(parsed, str):
                if is_last:
                    follower = _valid_record_after(data, off + 1, max(expected, 1))
                    if follower is None:
                        result.torn = TornTail(path, off, len(data) - off, parsed)
                        break
                    raise JournalCorrupt(
                        f"{path}: {parsed} at offset {off}, but valid records follow at offset "
                        f"{follower}: corruption before the tail"
                    )
                raise JournalCorrupt(
                    f"{path}: {parsed} at offset {off} in a segment that is not the last one"
                )
            seq, ts, command, end = parsed
            if first_in_segment and seq != first_seq:
                raise JournalCorrupt(
                    f"{path}: first record has seq {seq}, file name says {first_seq} (offset {off})"
                )
            first_in_segment = False
            if seq != seg_seq:
                raise JournalCorrupt(f"{path}: seq {seq} at offset {off}, expected {seg_seq}")
            seg_seq += 1
            if seq >= expected:
                if seq != expected:
                    raise JournalCorrupt(
                        f"{path}: journal gap: seq {seq} at offset {off}, expected {expected}"
                        + ("" if first_seen else " (the journal does not reach the snapshot)")
                    )
                first_seen = True
                expected = seq + 1
                result.last_seq = seq
                result.last_ts = ts
                result.records += 1
                yield Record(seq, ts, command, path, off)
            off = end
        result.last_segment_next = seg_seq
        if result.torn is not None:
            break
        if not is_last and segments[index + 1][0] != seg_seq:
            raise JournalCorrupt(
                f"{segments[index + 1][1]}: starts at seq {segments[index + 1][0]} but "
                f"{path} ends at seq {seg_seq - 1}"
            )
    yield result


class Journal:
    """Appends batches to the active segment. Every method runs in the journal worker thread."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._fd = -1
        self._size = 0
        self._active: Path | None = None
        self.bytes_written = 0

    def open(self, next_seq: int, scan: ScanResult) -> None:
        """Continue the last segment (after cutting a torn tail) or start a new one."""
        torn = scan.torn
        segments = list_segments(self.data_dir)
        if torn is not None:
            if torn.offset == 0:
                torn.path.unlink()
            else:
                with open(torn.path, "r+b") as f:
                    f.truncate(torn.offset)
                    os.fsync(f.fileno())
            segments = list_segments(self.data_dir)
        if segments:
            path = segments[-1][1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
            self._active = path
            # A new segment when full, or when the last one does not end right before
            # next_seq (a snapshot newer than the journal): segments stay contiguous inside.
            full = self._size >= self.segment_bytes and self._size > len(MAGIC)
            if full or scan.last_segment_next != next_seq:
                self._rotate(next_seq)
        else:
            self._create(next_seq)

    def _create(self, first_seq: int) -> None:
        path = self.data_dir / segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, MAGIC)
        os.fsync(fd)
        fsync_dir(self.data_dir)
        self._fd = fd
        self._size = len(MAGIC)
        self._active = path

    def _rotate(self, first_seq: int) -> None:
        old = self._fd
        self._create(first_seq)
        os.close(old)

    def needs_rotation(self) -> bool:
        return self._size >= self.segment_bytes and self._size > len(MAGIC)

    def write(self, data: bytes) -> None:
        """Append bytes to the active segment's page cache (no rotation, no fsync).

        Cheap enough for the event loop (a memory copy into the page cache, as Redis does for
        its append-only file); the fsync that makes it durable runs in the worker thread.
        """
        view = memoryview(data)
        written = 0
        while written < len(data):
            written += os.write(self._fd, view[written:])
        self._size += len(data)
        self.bytes_written += len(data)

    def sync(self) -> None:
        """Make everything written so far durable (a no-op with fsync disabled)."""
        if self.fsync:
            os.fdatasync(self._fd)

    def append(self, first_seq: int, data: bytes) -> None:
        """Rotate if due, write one batch (records first_seq...) and sync. OSError is fatal."""
        if self.needs_rotation():
            self._rotate(first_seq)
        self.write(data)
        self.sync()

    def prune(self, covered_seq: int) -> list[Path]:
        """Delete segments whose every record is <= covered_seq (never the active one)."""
        segments = list_segments(self.data_dir)
        removed: list[Path] = []
        for (_, path), (next_first, _) in itertools.pairwise(segments):
            if next_first - 1 <= covered_seq and path != self._active:
                path.unlink()
                removed.append(path)
        if removed:
            fsync_dir(self.data_dir)
        return removed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
