"""The command journal: segment files of checksummed, length-framed records, written into
zero-filled space that was made durable ahead of the write position.

Layout of a data directory:
    journal-<first seq, 20 digits>.log   segments, in seq order, contiguous
Each segment starts with the 8-byte MAGIC, then records, then (in the last segment) zeros:
    u32 length of the body | u32 crc32 of the body | body = u64 seq | u64 ts | command msgpack
(all big-endian). The command bytes are those the gateway sent, never re-encoded. A body is at
least 16 bytes, so a header of zeros (length 0) is never a record: it marks the end of data.

Why zeros ahead: an fdatasync after an append must also commit the file-system metadata (new
blocks, file size); after an overwrite of blocks already written and synced it need not. On the
benchmark machine (ext4 on virtio, 2 vCPUs) 300 B + fdatasync costs p50 294 us / p99 1.3 ms
wall and 136 us CPU as an append, p50 223 us / p99 0.8 ms and 106 us CPU as an overwrite of
synced zeros. fallocate alone does not give this (unwritten extents still need a metadata
commit at fdatasync): the zeros are really written, `prealloc_bytes` (1 MiB) at a time, and
synced, before any record lands on them.

Writing: `encode_batch` builds the bytes of one batch on the event loop, `Journal.write` copies
them into the page cache at the write position, and `Journal.sync` (one fdatasync for the whole
batch: group commit) runs in the journal's single worker thread. When the zero-filled space
left after a batch would drop below `prealloc_low`, or the segment passed `segment_bytes`, the
batch goes to the worker whole through `Journal.append`, which first zero-fills the next chunk
(one zero write + fdatasync) or rotates, then writes and syncs the batch.

Rotation truncates the old segment to its data and fsyncs it *before* creating the new one
(MAGIC and a first zero chunk, fsynced, then the directory fsynced), so a crash cannot leave a
zero tail on a segment that is not the last. The reader accepts one there anyway: the seq
contiguity check against the next segment proves no record is missing.

Reading (`scan_journal`) is strict: records must be contiguous in seq across segments. A zero
header with only zeros after it ends a segment's data. A bad record (a zero header followed by
non-zero bytes included) at the tail of the last segment with no valid record after it (torn
write) is reported as `torn` so the caller truncates it; any other damage raises
`JournalCorrupt` naming the file and offset. `Journal.open` cuts the last segment at the end
of its valid data (dropping a torn record and whatever follows it), zero-fills afresh and
continues there.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exchange.journal.files import numbered_files, open_private

MAGIC = b"XJRNL01\n"
HEADER = struct.Struct(">II")  # body length, crc32(body)
SEQ_TS = struct.Struct(">QQ")
RECORD_OVERHEAD = HEADER.size + SEQ_TS.size
MAX_COMMAND_BYTES = 64 * 1024  # commands are tiny; anything bigger is damage, not data
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# Zero-fill ahead in 1 MiB chunks: here a 4 MiB zero write + fdatasync stalls its batch for
# ~20-30 ms, 1 MiB for ~2-4 ms, and the one metadata commit per chunk is noise either way.
DEFAULT_PREALLOC_BYTES = 1024 * 1024
# Refill when less than this is left, so that a batch rarely outgrows the zeroed space.
DEFAULT_PREALLOC_LOW = 256 * 1024
_PAGE = 4096
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
    # Where the valid data of the last segment read ends (a torn record's offset if torn):
    # the writer continues there, over the zeros or the torn bytes.
    end_path: Path | None = None
    end_offset: int = 0
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


def _zeros_from(data: bytes, off: int) -> bool:
    """Whether everything from `off` to the end is zero (preallocated, never written)."""
    return data.count(0, off) == len(data) - off


def _data_end(data: bytes) -> int:
    """The offset just past the last non-zero byte (copies `data`: error paths only)."""
    return len(data.rstrip(b"\0"))


def _valid_record_after(data: bytes, start: int, min_seq: int) -> int | None:
    """Offset of any checksum-valid record with seq >= min_seq at or after `start`.

    Used only on the error path to tell a torn tail (nothing valid follows) from damage in the
    middle (valid records follow). Byte-by-byte, so it costs about a second per few MB; it
    stops at the zero tail, since a record's non-zero length field precedes its last byte.
    """
    for off in range(start, min(len(data) - RECORD_OVERHEAD + 1, _data_end(data))):
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
            written = data.rstrip(b"\0")  # MAGIC holds no zero byte
            if is_last and len(written) <= len(MAGIC) and MAGIC.startswith(written):
                # Crash while creating the segment (MAGIC and zeros): it holds no record.
                result.torn = TornTail(path, 0, len(data), "segment header incomplete")
                break
            raise JournalCorrupt(f"{path}: bad segment header (offset 0)")
        off = len(MAGIC)
        seg_seq = first_seq
        first_in_segment = True
        while off < len(data):
            parsed = _parse_at(data, off)
            if isinstance(parsed, str):
                # A record's length is never 0: zeros up to the end are preallocated space.
                if _zeros_from(data, off):
                    break
                if is_last:
                    follower = _valid_record_after(data, off + 1, max(expected, 1))
                    if follower is None:
                        # Report the bytes cut, not the preallocated zeros after them.
                        result.torn = TornTail(path, off, _data_end(data) - off, parsed)
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
        result.end_path = path
        result.end_offset = off
        if result.torn is not None:
            break
        if not is_last and segments[index + 1][0] != seg_seq:
            raise JournalCorrupt(
                f"{segments[index + 1][1]}: starts at seq {segments[index + 1][0]} but "
                f"{path} ends at seq {seg_seq - 1}"
            )
    yield result


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


class Journal:
    """Writes batches into the zero-filled space of the active segment.

    `write` (and at low load `sync`) may run on the event loop, everything else runs in the
    journal worker thread; the matcher never has two of them running at once.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        prealloc_bytes: int = DEFAULT_PREALLOC_BYTES,
        prealloc_low: int = DEFAULT_PREALLOC_LOW,
    ) -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        # Zeroing more than a segment holds would be cut again at rotation; without fsync
        # there is no fdatasync to make cheaper, so the zeros would be pure cost.
        self.prealloc_bytes = min(prealloc_bytes, _round_up(segment_bytes, _PAGE)) if fsync else 0
        self.prealloc_low = min(prealloc_low, self.prealloc_bytes // 4)
        self._fd = -1
        self._size = 0  # the write position: the end of the records
        self._alloc = 0  # the end of the file: [_size, _alloc) is zeros, durable
        self._active: Path | None = None
        self.bytes_written = 0

    def open(self, next_seq: int, scan: ScanResult) -> None:
        """Continue the last segment at the end of its valid data, or start a new one."""
        torn = scan.torn
        if torn is not None and torn.offset == 0:
            torn.path.unlink()
        segments = list_segments(self.data_dir)
        if not segments or segments[-1][1] != scan.end_path:
            # No segment, or the last one was not read (covered by the snapshot): a new one.
            self._create(next_seq)
            return
        path = segments[-1][1]
        end = scan.end_offset
        fd = open_private(path, os.O_WRONLY)
        self._fd = fd
        self._active = path
        self._size = self._alloc = end
        if os.fstat(fd).st_size != end:
            # Drop the zeros and any torn or stale bytes after the valid data: left in place
            # under shorter new records, they could later read as records.
            os.ftruncate(fd, end)
            os.fsync(fd)
        # A new segment when full, or when the last one does not end right before next_seq
        # (a snapshot newer than the journal): segments stay contiguous inside.
        if self.needs_rotation() or scan.last_segment_next != next_seq:
            self._rotate(next_seq)
            return
        os.lseek(fd, end, os.SEEK_SET)
        if self.needs_space(0):
            self._zero_fill(0)

    def _create(self, first_seq: int) -> None:
        path = self.data_dir / segment_name(first_seq)
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, MAGIC)
        self._fd = fd
        self._size = self._alloc = len(MAGIC)
        self._active = path
        if self.prealloc_bytes:
            self._write_zeros(0)
        os.fsync(fd)
        fsync_dir(self.data_dir)

    def _rotate(self, first_seq: int) -> None:
        old = self._fd
        if self._alloc > self._size:
            # Before the new segment exists, so that only the last segment has a zero tail.
            os.ftruncate(old, self._size)
            os.fsync(old)
        self._create(first_seq)
        os.close(old)

    def needs_rotation(self) -> bool:
        return self._size >= self.segment_bytes and self._size > len(MAGIC)

    def needs_space(self, size: int) -> bool:
        """Whether writing `size` bytes would leave less zeroed space than `prealloc_low`:
        the batch then goes through `append`, which zero-fills the next chunk first."""
        return self.prealloc_bytes > 0 and self._alloc - self._size - size < self.prealloc_low

    def _write_zeros(self, size: int) -> None:
        """Zero the file from the write position to whole chunks past `size` + prealloc_low."""
        target = _round_up(self._size + size + self.prealloc_low, self.prealloc_bytes)
        start = max(self._alloc, self._size)
        zeros = memoryview(bytes(min(target - start, self.prealloc_bytes)))
        while start < target:
            # pwrite: the file position stays at the write position.
            start += os.pwrite(self._fd, zeros[: target - start], start)
        self._alloc = target

    def _zero_fill(self, size: int) -> None:
        """Make room for `size` bytes plus the low-water mark: one zero write + fdatasync."""
        self._write_zeros(size)
        os.fdatasync(self._fd)

    def write(self, data: bytes) -> None:
        """Write bytes at the write position, into the page cache (no rotation, no fsync).

        Cheap enough for the event loop (a memory copy into the page cache, as Redis does for
        its append-only file); the fsync that makes it durable runs in the worker thread.
        """
        view = memoryview(data)
        written = 0
        while written < len(data):
            written += os.write(self._fd, view[written:])
        self._size += len(data)
        self._alloc = max(self._alloc, self._size)
        self.bytes_written += len(data)

    def sync(self) -> None:
        """Make everything written so far durable (a no-op with fsync disabled)."""
        if self.fsync:
            os.fdatasync(self._fd)

    def append(self, first_seq: int, data: bytes) -> None:
        """Rotate or zero-fill if due, write one batch (records first_seq...) and sync.

        OSError is fatal."""
        if self.needs_rotation():
            self._rotate(first_seq)
        if self.needs_space(len(data)):
            self._zero_fill(len(data))
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
