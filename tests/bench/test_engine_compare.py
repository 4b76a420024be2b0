"""bench.engine_compare: a small run prints a row per kind for both books and its RESULT line;
without the other book it says what to install."""

from __future__ import annotations

import re

import pytest

from bench import engine_compare


def test_compare_prints_both_books(capsys: pytest.CaptureFixture[str]) -> None:
    assert engine_compare.load_other() is not None, engine_compare.INSTALL_HINT
    assert engine_compare.main(["--commands", "4000", "--book", "400", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    for kind in engine_compare.KINDS:
        # engine p50, p99, other p50, p99, ratio p50, p99
        assert re.search(rf"^{kind} +(\d+\.\d\d +){{5}}\d+\.\d\d$", out, re.M), kind
    assert "no amend: timed as its cancel + a new place" in out
    assert re.search(
        r"^RESULT engine_compare place_p50_ratio=\d+\.\d\d cancel_p50_ratio=\d+\.\d\d "
        r"amend_p50_ratio=\d+\.\d\d marketable_p50_ratio=\d+\.\d\d$", out, re.M,
    )


def test_compare_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine_compare, "load_other", lambda: None)
    assert engine_compare.main(["--commands", "10"]) == 2
    assert "pip install -e '.[bench]'" in capsys.readouterr().err
