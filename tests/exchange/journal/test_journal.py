"""Journal format: round trip, rotation, torn tails (cut or flipped), corrupt middles, gaps."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from exchange.journal.log import (
    HEADER,
    MAGIC,
    Journal,
    JournalCorrupt,
    Record,
    ScanResult,
    encode_batch,
    encode_record,
    list_segments,
    scan_journal,
)


def scan(data_dir: Path, after: int = 0) -> tuple[list[Record], ScanResult]:
    records: list[Record] = []
    result: ScanResult | None = None
    for item in scan_journal(data_dir, after):
        if isinstance(item, Record):
            records.append(item)
        else:
            result = item
    assert result is not None
    return records, result


def write(data_dir: Path, batches: list[list[bytes]], segment_bytes: int = 1 << 20) -> None:
    journal = Journal(data_dir, fsync=True, segment_bytes=segment_bytes)
    _, result = scan(data_dir)
    seq = result.last_seq + 1
    journal.open(seq, result)
    for batch in batches:
        journal.append(seq, encode_batch(seq, 1000 + seq, batch))
        seq += len(batch)
    journal.close()


def commands(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(1, 120)) for _ in range(n)]


def test_round_trip_and_rotation(tmp_path: Path) -> None:
    cmds = commands(500)
    write(tmp_path, [cmds[i : i + 37] for i in range(0, 500, 37)], segment_bytes=4096)
    segments = list_segments(tmp_path)
    assert len(segments) > 3
    records, result = scan(tmp_path)
    assert [r.command for r in records] == cmds
    assert [r.seq for r in records] == list(range(1, 501))
    assert result.torn is None and result.last_seq == 500
    # Each segment is named after its first record.
    for first_seq, path in segments:
        assert path.read_bytes()[: len(MAGIC)] == MAGIC
        assert any(r.seq == first_seq and r.path == path for r in records)
    # Reading after a snapshot seq yields only later records.
    later, _ = scan(tmp_path, after=321)
    assert [r.seq for r in later] == list(range(322, 501))
    # Appending after reopening continues the sequence.
    write(tmp_path, [commands(3, seed=2)], segment_bytes=4096)
    again, result = scan(tmp_path)
    assert result.last_seq == 503 and len(again) == 503


def test_record_checksum_covers_seq_ts_and_command() -> None:
    a = encode_record(1, 2, b"abc")
    assert a != encode_record(2, 2, b"abc") and a != encode_record(1, 3, b"abc")
    assert encode_batch(1, 2, [b"abc"]) == a


def data_end(data_dir: Path) -> int:
    """Where the records of the last segment end (zeros follow, up to the end of the file)."""
    return scan(data_dir)[1].end_offset


@pytest.mark.parametrize("seed", range(12))
def test_torn_tail_cut_is_truncated(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cmds = commands(50, seed)
    write(tmp_path, [cmds[:30], cmds[30:]])
    path = list_segments(tmp_path)[-1][1]
    data = path.read_bytes()
    end = data_end(tmp_path)
    last_len = len(encode_record(50, 0, cmds[-1]))
    cut = rng.randint(1, last_len - 1)  # somewhere inside the last record
    # The record's end never reached the disk: the preallocated zeros are still there, or
    # (odd seeds, a journal from before preallocation) the file ends.
    torn = data[: end - cut]
    path.write_bytes(torn + bytes(len(data) - len(torn)) if seed % 2 == 0 else torn)
    records, result = scan(tmp_path)
    assert result.torn is not None and result.torn.offset == end - last_len
    assert [r.seq for r in records] == list(range(1, 50))
    write(tmp_path, [[b"next"]])  # open() truncates the torn bytes, then appends seq 50
    records, result = scan(tmp_path)
    assert result.torn is None and records[-1].seq == 50 and records[-1].command == b"next"


@pytest.mark.parametrize("seed", range(12))
def test_torn_tail_flipped_is_truncated(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cmds = commands(40, seed)
    write(tmp_path, [cmds])
    path = list_segments(tmp_path)[-1][1]
    data = bytearray(path.read_bytes())
    end = data_end(tmp_path)
    last_len = len(encode_record(40, 0, cmds[-1]))
    for _ in range(rng.randint(1, 4)):
        pos = end - rng.randint(1, last_len)
        data[pos] ^= rng.randint(1, 255)
    path.write_bytes(bytes(data))
    records, result = scan(tmp_path)
    assert result.torn is not None
    assert [r.seq for r in records] == list(range(1, 40))


def test_partial_segment_header_is_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, [commands(5)])
    (tmp_path / "journal-00000000000000000006.log").write_bytes(MAGIC[:3])
    records, result = scan(tmp_path)
    assert len(records) == 5 and result.torn is not None and result.torn.offset == 0
    write(tmp_path, [[b"x"]])
    records, result = scan(tmp_path)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6] and result.torn is None


@pytest.mark.parametrize("seed", range(6))
def test_corrupt_middle_stops_with_file_and_offset(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cmds = commands(60, seed)
    write(tmp_path, [cmds])
    path = list_segments(tmp_path)[-1][1]
    data = bytearray(path.read_bytes())
    # Flip a byte inside record 20 (well before the tail).
    offset = len(MAGIC) + sum(len(encode_record(i + 1, 0, c)) for i, c in enumerate(cmds[:19]))
    data[offset + rng.randint(0, 20)] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as info:
        scan(tmp_path)
    message = str(info.value)
    assert str(path) in message and f"offset {offset}" in message
    assert "valid records follow" in message


def test_corrupt_non_last_segment_stops(tmp_path: Path) -> None:
    write(tmp_path, [commands(100)], segment_bytes=1)
    write(tmp_path, [commands(10, seed=3)], segment_bytes=1)
    first = list_segments(tmp_path)[0][1]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # the very end of a segment that is not the last one
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="not the last one"):
        scan(tmp_path)


def test_missing_segment_is_a_gap(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path, [commands(10, seed=i)], segment_bytes=1)
    segments = list_segments(tmp_path)
    assert len(segments) == 3
    segments[1][1].unlink()
    with pytest.raises(JournalCorrupt, match="ends at seq 10"):
        scan(tmp_path)


def test_prune_keeps_active_and_uncovered(tmp_path: Path) -> None:
    for i in range(4):
        write(tmp_path, [commands(10, seed=i)], segment_bytes=1)
    journal = Journal(tmp_path, segment_bytes=1)
    _, result = scan(tmp_path)
    journal.open(result.last_seq + 1, result)
    removed = journal.prune(covered_seq=25)  # segments 1-10 and 11-20 are covered
    assert [p.name for p in removed] == ["journal-00000000000000000001.log",
                                         "journal-00000000000000000011.log"]
    records, _ = scan(tmp_path, after=25)
    assert [r.seq for r in records] == list(range(26, 41))
    journal.close()


# Preallocation: records are written into zeros made durable ahead of the write position.

CHUNK = 8192


def open_journal(data_dir: Path, *, segment_bytes: int = 1 << 20, prealloc_bytes: int = CHUNK,
                 prealloc_low: int = CHUNK // 4) -> tuple[Journal, int]:
    """A journal continuing `data_dir`, and the seq its next record carries."""
    journal = Journal(data_dir, segment_bytes=segment_bytes, prealloc_bytes=prealloc_bytes,
                      prealloc_low=prealloc_low)
    _, result = scan(data_dir)
    journal.open(result.last_seq + 1, result)
    return journal, result.last_seq + 1


def test_zero_tail_is_the_end_of_data(tmp_path: Path) -> None:
    cmds = commands(30)
    write(tmp_path, [cmds[:10], cmds[10:]])
    path = list_segments(tmp_path)[-1][1]
    used = len(MAGIC) + len(encode_batch(1, 0, cmds))
    size = path.stat().st_size
    assert size > used and path.read_bytes()[used:] == bytes(size - used)
    records, result = scan(tmp_path)
    assert [r.command for r in records] == cmds and [r.seq for r in records] == list(range(1, 31))
    assert result.torn is None and result.end_offset == used
    # Zeros shorter than a record header, or none at all, end the data just the same.
    for tail in (7, 1, 0):
        path.write_bytes(path.read_bytes()[:used] + bytes(tail))
        records, result = scan(tmp_path)
        assert len(records) == 30 and result.torn is None and result.end_offset == used


@pytest.mark.parametrize("written", ["MAGIC[:3]", "none", "MAGIC"])
def test_new_segment_with_zeros_only(tmp_path: Path, written: str) -> None:
    write(tmp_path, [commands(5)])
    head = {"MAGIC[:3]": MAGIC[:3], "none": b"", "MAGIC": MAGIC}[written]
    (tmp_path / "journal-00000000000000000006.log").write_bytes(head + bytes(CHUNK))
    records, result = scan(tmp_path)
    assert len(records) == 5
    # A complete MAGIC followed by zeros is an empty segment, anything less a torn creation.
    assert (result.torn is None) == (written == "MAGIC")
    write(tmp_path, [[b"x"]])
    records, result = scan(tmp_path)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6] and result.torn is None


def tear(record: bytes, how: str, rng: random.Random) -> bytes:
    """What of `record` reached the disk before a crash (the rest of its space is zeros)."""
    if how == "body_zeroed":  # header intact, the end of the body never written
        keep = rng.randint(HEADER.size, len(record) - 1)
        return record[:keep] + bytes(len(record) - keep)
    if how == "header_cut":  # only part of the header (with its non-zero length byte)
        return record[:4] + bytes(len(record) - 4)
    return bytes(rng.randint(1, 255) for _ in range(len(record)))  # garbage


@pytest.mark.parametrize("how", ["body_zeroed", "header_cut", "garbage"])
@pytest.mark.parametrize("seed", range(4))
def test_torn_record_before_zeros_is_cut_and_overwritten(
    tmp_path: Path, how: str, seed: int
) -> None:
    rng = random.Random(seed)
    cmds = commands(20, seed)
    long_command = rng.randbytes(200)
    write(tmp_path, [cmds, [long_command]])
    path = list_segments(tmp_path)[-1][1]
    data = bytearray(path.read_bytes())
    start = len(MAGIC) + len(encode_batch(1, 0, cmds))
    record = encode_record(21, 0, long_command)
    torn = tear(record, how, rng)
    data[start : start + len(record)] = torn
    path.write_bytes(bytes(data))
    records, result = scan(tmp_path)
    assert result.torn is not None and result.torn.path == path and result.torn.offset == start
    assert result.torn.size == len(torn.rstrip(b"\0"))  # the bytes cut, not the zeros after
    assert [r.seq for r in records] == list(range(1, 21)) and result.end_offset == start
    # Reopen: the writer continues where the valid data ends, over the torn record. The new
    # record is shorter than the torn one: nothing of the torn bytes may remain after it.
    write(tmp_path, [[b"short"], [b"next"]])
    records, result = scan(tmp_path)
    assert result.torn is None
    assert [r.seq for r in records] == list(range(1, 23))
    assert [r.command for r in records[20:]] == [b"short", b"next"]
    assert records[20].offset == start
    after = start + len(encode_batch(21, 0, [b"short", b"next"]))
    assert not any(path.read_bytes()[after:])


def test_reopen_without_fsync_cuts_torn_bytes_and_zeros(tmp_path: Path) -> None:
    cmds = commands(10)
    write(tmp_path, [cmds, [bytes(range(1, 201))]])
    path = list_segments(tmp_path)[-1][1]
    data = bytearray(path.read_bytes())
    start = len(MAGIC) + len(encode_batch(1, 0, cmds))
    data[start + 20 :] = bytes(len(data) - start - 20)  # record 11 torn, zeros after
    path.write_bytes(bytes(data))
    _, result = scan(tmp_path)
    assert result.torn is not None and result.end_offset == start
    # Without fsync nothing is preallocated: the writer must still start at the valid end and
    # leave neither the torn bytes nor the zeros behind its records.
    journal = Journal(tmp_path, fsync=False)
    journal.open(11, result)
    journal.append(11, encode_batch(11, 0, [b"x"]))
    journal.close()
    records, result = scan(tmp_path)
    assert result.torn is None and [r.seq for r in records] == list(range(1, 12))
    assert path.stat().st_size == start + len(encode_record(11, 0, b"x"))


@pytest.mark.parametrize("seed", range(8))
def test_crash_mid_batch_then_recovery(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    durable = commands(25, seed)
    journal, seq = open_journal(tmp_path)
    journal.append(seq, encode_batch(seq, 7, durable))
    # The next batch is only partly in the file when the process dies (no fdatasync, never
    # acknowledged): any prefix of its bytes, the rest still the preallocated zeros.
    lost = commands(6, seed + 100)
    batch = encode_batch(26, 8, lost)
    part = rng.randint(1, len(batch) - 1)
    journal.write(batch[:part])
    journal.close()
    complete = 0  # records of the lost batch that are whole in the prefix
    boundary = 0
    while complete < len(lost):
        size = len(encode_record(26 + complete, 8, lost[complete]))
        if boundary + size > part:
            break
        boundary += size
        complete += 1
    records, result = scan(tmp_path)
    assert [r.command for r in records] == durable + lost[:complete]
    # A partial record with a non-zero byte is torn; a prefix ending on a record boundary (or
    # holding only zero bytes of the next header) is simply the end.
    assert (result.torn is not None) == any(batch[boundary:part])
    # Recovery continues the sequence right after what was read, with nothing in between.
    journal, seq = open_journal(tmp_path)
    assert seq == 26 + complete
    journal.append(seq, encode_batch(seq, 9, [b"after"]))
    journal.close()
    records, result = scan(tmp_path)
    assert result.torn is None
    assert [r.seq for r in records] == list(range(1, seq + 1))
    assert records[-1].command == b"after"


def test_rotation_cuts_the_zero_tail_of_the_old_segment(tmp_path: Path) -> None:
    cmds = commands(300)
    journal, seq = open_journal(tmp_path, segment_bytes=2000, prealloc_bytes=1 << 20)
    for i in range(0, 300, 20):
        journal.append(seq, encode_batch(seq, 5, cmds[i : i + 20]))
        seq += 20
    journal.close()
    segments = list_segments(tmp_path)
    assert len(segments) > 3
    records, result = scan(tmp_path)
    assert [r.command for r in records] == cmds and result.torn is None
    for index, (_, path) in enumerate(segments):
        mine = [r for r in records if r.path == path]
        end = mine[-1].offset + len(encode_record(mine[-1].seq, 5, mine[-1].command))
        size = path.stat().st_size
        if index < len(segments) - 1:
            assert size == end, f"{path.name} keeps a zero tail after rotation"
        else:
            # The chunk is capped at the segment size, rounded up to a page.
            assert size > end and size % 4096 == 0
    # A crash between truncating and creating cannot leave a zero tail on an older segment,
    # but one found there anyway hides nothing: the next segment's first seq must follow.
    first = segments[0][1]
    first.write_bytes(first.read_bytes() + bytes(100))
    records, result = scan(tmp_path)
    assert len(records) == 300 and result.torn is None
    segments[1][1].unlink()
    with pytest.raises(JournalCorrupt, match="ends at seq"):
        scan(tmp_path)


def test_preallocation_extends_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    syncs = {"n": 0}
    real_fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        syncs["n"] += 1
        real_fdatasync(fd)

    journal, seq = open_journal(tmp_path)
    path = list_segments(tmp_path)[-1][1]
    assert path.stat().st_size == CHUNK
    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    cmds = commands(400, seed=5)
    sizes = [CHUNK]
    batches = 0
    for i in range(0, 400, 10):
        data = encode_batch(seq, 1, cmds[i : i + 10])
        journal.append(seq, data)
        seq += 10
        batches += 1
        size = path.stat().st_size
        position = len(MAGIC) + len(encode_batch(1, 1, cmds[: i + 10]))
        assert size % CHUNK == 0 and size - sizes[-1] in (0, CHUNK)
        assert size - position >= CHUNK // 4  # the low-water mark holds after every batch
        if size != sizes[-1]:
            sizes.append(size)
    journal.close()
    assert len(sizes) > 3, "the writes never passed the threshold"
    # One fdatasync per batch, plus one per chunk of zeros.
    assert syncs["n"] == batches + len(sizes) - 1
    records, result = scan(tmp_path)
    assert [r.command for r in records] == cmds and result.torn is None
