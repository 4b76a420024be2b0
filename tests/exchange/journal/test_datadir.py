"""The data directory: new and empty ones are marked, an exchange's own accepted, others refused
with one line and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.journal.datadir import MARKER, NotADataDir, check_readable, claim


def test_new_directory_is_created_and_marked(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b"
    claim(data)
    assert (data / MARKER).is_file()
    claim(data)  # its own: accepted again
    assert sorted(p.name for p in data.iterdir()) == [MARKER]


def test_unmarked_directory_of_journal_files_is_adopted(tmp_path: Path) -> None:
    (tmp_path / "journal-00000000000000000001.log").write_bytes(b"")
    (tmp_path / "snapshot-00000000000000000001.snap").write_bytes(b"")
    (tmp_path / "LOCK").write_bytes(b"")
    claim(tmp_path)
    assert (tmp_path / MARKER).is_file()


def test_foreign_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "photos").mkdir()
    with pytest.raises(NotADataDir) as info:
        claim(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "is not an exchange data directory (it holds notes.txt, photos)" in message
    assert not (tmp_path / MARKER).exists()


def test_older_up_layout_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "matcher").mkdir()
    (tmp_path / "matcher" / "journal-00000000000000000001.log").write_bytes(b"")
    (tmp_path / "matcher.log").write_text("")
    with pytest.raises(NotADataDir, match="older `exchange up` layout") as info:
        claim(tmp_path)
    assert "move the files of" in str(info.value)
    assert not (tmp_path / MARKER).exists()


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text('{"format": 99}\n')
    with pytest.raises(NotADataDir, match="format 99"):
        claim(tmp_path)
    (tmp_path / MARKER).write_text("garbage")
    with pytest.raises(NotADataDir, match="unreadable"):
        claim(tmp_path)


def test_read_only_check_accepts_marked_and_unmarked_journal_directories(tmp_path: Path) -> None:
    marked = tmp_path / "marked"
    claim(marked)
    check_readable(marked)
    unmarked = tmp_path / "unmarked"
    unmarked.mkdir()
    (unmarked / "journal-00000000000000000001.log").write_bytes(b"")
    check_readable(unmarked)
    assert not (unmarked / MARKER).exists()  # read-only: nothing written


@pytest.mark.parametrize("make", ["missing", "empty", "foreign"])
def test_read_only_check_refuses_what_holds_no_exchange(tmp_path: Path, make: str) -> None:
    data = tmp_path / "data"
    if make != "missing":
        data.mkdir()
    if make == "foreign":
        (data / "notes.txt").write_text("mine")
    with pytest.raises(NotADataDir) as info:
        check_readable(data)
    assert "\n" not in str(info.value)
    assert not (data / MARKER).exists()

