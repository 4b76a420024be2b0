"""Journal format: round trip, rotation, torn tails (cut or flipped), corrupt middles, gaps."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from exchange.journal import (
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
