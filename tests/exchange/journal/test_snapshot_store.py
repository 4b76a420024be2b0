"""Snapshot files: atomic write, checksum, fallback to the older one, temp cleanup, pruning."""

from __future__ import annotations

from pathlib import Path

from exchange.journal.snapshots import Snapshot, SnapshotStore, list_snapshots, snapshot_name


def test_write_read_and_prune(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for seq in (10, 20, 30):
        store.write(seq, f"state-{seq}".encode() * 100)
    snap, rejected = store.newest_valid()
    assert isinstance(snap, Snapshot) and snap.seq == 30 and not rejected
    assert snap.data == b"state-30" * 100
    keep_seq, removed = store.prune()
    assert keep_seq == 20 and [p.name for p in removed] == [snapshot_name(10)]
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [30, 20]


def test_damaged_newest_falls_back_with_reason(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(5, b"older")
    path = store.write(9, b"newer" * 50)
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    snap, rejected = store.newest_valid()
    assert snap is not None and snap.seq == 5 and snap.data == b"older"
    assert rejected == [(path, "checksum mismatch")]
    path.write_bytes(bytes(data[:-10]))  # truncated
    _, rejected = store.newest_valid()
    assert "length" in rejected[0][1]


def test_crash_mid_write_leaves_older_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(7, b"good")
    # What a crash during write() leaves: a temp file, never renamed into place.
    (tmp_path / ".snapshot-00000000000000000012.tmp").write_bytes(b"XSNAP01\nhalf")
    snap, rejected = store.newest_valid()
    assert snap is not None and snap.seq == 7 and not rejected
    assert [p.name for p in store.remove_temp_files()] == [".snapshot-00000000000000000012.tmp"]
    assert not list(tmp_path.glob(".snapshot-*"))


def test_no_snapshot(tmp_path: Path) -> None:
    assert SnapshotStore(tmp_path).newest_valid() == (None, [])
    assert SnapshotStore(tmp_path).prune() == (0, [])
