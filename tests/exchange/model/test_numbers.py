"""Decimal strings at the edge: exact or rejected, never rounded."""

from __future__ import annotations

import pytest

from exchange.model.numbers import (
    MAX_DECIMAL_CHARS,
    MAX_UNITS,
    decimals_of,
    format_units,
    parse_steps,
    parse_units,
)


@pytest.mark.parametrize(
    ("text", "decimals", "units"),
    [
        ("0", 2, 0), ("1", 2, 100), ("101.25", 2, 10125), ("0.5", 4, 5000),
        ("1.500", 2, 150), ("1.", 2, None), (".5", 2, None), ("007", 2, None),
        ("0.00", 2, 0), ("12345678901234567890", 0, 12345678901234567890),
    ],
)
def test_parse_units(text: str, decimals: int, units: int | None) -> None:
    assert parse_units(text, decimals) == units


@pytest.mark.parametrize(
    "text",
    ["NaN", "nan", "Inf", "inf", "-Inf", "Infinity", "1e3", "1E3", "1e-3", "-1", "+1", " 1",
     "1 ", "", "1,5", "1_000", "0x10", "\uff11", "\u0663", "1.2.3", "--1", ".", "1.25 "],
)
def test_rejects_non_plain_decimals(text: str) -> None:
    assert parse_units(text, 2) is None
    assert parse_steps(text, 1, 2) is None


@pytest.mark.parametrize("value", [1, 1.5, None, b"1", ["1"], float("nan"), True])
def test_rejects_non_strings(value: object) -> None:
    assert parse_units(value, 2) is None


def test_too_many_decimals_rejected_unless_zeros() -> None:
    assert parse_units("1.005", 2) is None
    assert parse_units("1.0000000001", 2) is None
    assert parse_units("1.0000000000", 2) == 100


def test_too_long_input_rejected() -> None:
    assert parse_units("1" * MAX_DECIMAL_CHARS, 0) == int("1" * MAX_DECIMAL_CHARS)
    assert parse_units("1" * (MAX_DECIMAL_CHARS + 1), 0) is None


@pytest.mark.parametrize(
    ("text", "step", "decimals", "steps"),
    [
        ("0.05", 5, 2, 1), ("0.10", 5, 2, 2), ("0.07", 5, 2, None), ("0", 5, 2, None),
        ("0.00", 1, 2, None), ("50000.00", 1, 2, 5_000_000), ("0.0001", 1, 4, 1),
        ("0.00005", 1, 4, None),
    ],
)
def test_parse_steps(text: str, step: int, decimals: int, steps: int | None) -> None:
    assert parse_steps(text, step, decimals) == steps


def test_decimals_of() -> None:
    assert decimals_of("0.01") == 2
    assert decimals_of("5") == 0
    assert decimals_of("0.00001") == 5
    for bad in ("", "1e-2", "-0.01", ".01", "abc"):
        with pytest.raises(ValueError):
            decimals_of(bad)


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [(10150, 2, "101.50"), (5, 2, "0.05"), (0, 2, "0.00"), (7, 0, "7"), (-5, 2, "-0.05"),
     (10**20, 8, "1000000000000.00000000")],
)
def test_format_units_is_canonical(units: int, decimals: int, text: str) -> None:
    assert format_units(units, decimals) == text
    if units >= 0:
        assert parse_units(text, decimals) == units


def test_format_units_memo_stays_right_and_bounded() -> None:
    from exchange.model import numbers

    table = numbers._FORMATTED[3]
    for round_ in range(2):  # the second pass reads what the first one stored
        for units in range(-50, 3 * numbers._FORMATTED_MAX, 997):
            assert parse_units(format_units(abs(units), 3), 3) == abs(units)
            assert format_units(units, 3) == numbers._format_units(units, 3), round_
    assert len(table) <= numbers._FORMATTED_MAX


def test_steps_past_max_units_are_rejected() -> None:
    assert parse_steps(str(MAX_UNITS), 1, 0) == MAX_UNITS
    assert parse_steps(str(MAX_UNITS + 1), 1, 0) is None
    assert parse_steps("9" * 39, 1, 0) is None
    assert parse_steps("18446744073709.551616", 1, 6) is None
