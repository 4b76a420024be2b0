"""The offline replay tool (`python -m exchange.matcher.replay`) refuses what is not a data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.matcher.replay import main as replay_main


def test_replay_refuses_a_directory_that_is_not_an_exchanges(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_main(["--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "is not an exchange data directory" in captured.err
