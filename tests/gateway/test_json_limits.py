"""Nesting-bounded JSON: deep documents refused before a decoder recurses into them."""

from __future__ import annotations

import json
import time

import pytest

from gateway.json_limits import MAX_JSON_DEPTH, TooDeep, check_depth, nesting_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0), (b"[]", 1), (b'{"a":[[1],{"b":2}]}', 3), (b'["[[[[", "]]"]', 1),
        (b'["\\"[[["]', 1), (b'{"a":"\\\\"}', 1),
    ],
)
def test_nesting_depth_ignores_brackets_in_strings(text: bytes, depth: int) -> None:
    assert nesting_depth(text) == depth
    assert nesting_depth(text) == _depth_of(json.loads(text))


def _depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth_of(v) for v in value), default=0)
    return 0


def test_the_bound_itself_passes_and_one_more_level_is_refused() -> None:
    check_depth("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    check_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(TooDeep):
        check_depth("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(TooDeep):
        check_depth(b'{"a":' * 2000 + b"1" + b"}" * 2000)
    # Many brackets side by side are not deep.
    check_depth(b"[" + b"[]," * 5000 + b"[]]")


@pytest.mark.parametrize(
    "hostile",
    [
        b"[" * 65536,
        b"[" * 40 + b'"' + b'\\"' * 32768,  # an unterminated string full of escaped quotes
        b"[" * 40 + b'"' * 65536,
        b"[" * 40 + b'"\\' * 32768,
    ],
)
def test_hostile_input_is_scanned_in_linear_time(hostile: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(TooDeep):
        check_depth(hostile)
    # A quadratic scan of 64 KB takes seconds; the linear one takes milliseconds.
    assert time.perf_counter() - started < 0.5
