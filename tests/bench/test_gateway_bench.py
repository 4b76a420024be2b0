"""The gateway request-path benchmark: a short run answers every request through the real
trade path and ends with its RESULT line."""

from __future__ import annotations

import re

import pytest

from bench import gateway as bench
from exchange.model.instruments import load_config


async def test_recording_answers_every_request() -> None:
    turns, answers, frames = await bench.record(load_config(), 400, sessions=5, per_turn=4,
                                                seed=2)
    assert sum(len(turn) for turn in turns) == 400
    assert len(answers) == len(turns)
    # An answer per request and at least one execution report for most of them.
    assert 400 * 1.5 < frames < 400 * 4


def test_bench_prints_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--requests", "400", "--repeats", "1", "--sessions", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"RESULT gateway_path us_per_request=\d+\.\d+ "
                        r"frames_per_request=\d+\.\d+", lines[-1])
