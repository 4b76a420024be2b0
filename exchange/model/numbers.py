"""Exact conversion between wire decimal strings and integer units.

Money is integers inside. A decimal string becomes an integer count of `10**-decimals`
units, or is rejected: never rounded. Accepted form: digits, optionally one `.` followed by
digits; no sign, exponent, whitespace, NaN or Inf.
"""

from __future__ import annotations

import re

_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.([0-9]+))?")
# Refuse absurd inputs before doing arithmetic on them (bounded work per message).
MAX_DECIMAL_CHARS = 40
# The largest count of units, ticks or lots an edge conversion hands on: the link and the
# journal carry 64-bit integers (msgpack), and the engine keeps every asset's total under this
# same bound, so a value that passes here can be encoded, journaled and summed.
MAX_UNITS = 2**62
# Powers of ten as ints (int ** int is typed as Any, and this is also faster).
POW10: tuple[int, ...] = tuple(10**i for i in range(41))


def decimals_of(step: str) -> int:
    """Number of decimals in a canonical step string such as "0.01" (2) or "5" (0)."""
    if not _DECIMAL.fullmatch(step):
        raise ValueError(f"not a plain decimal: {step!r}")
    _, _, frac = step.partition(".")
    return len(frac)


def parse_units(text: object, decimals: int) -> int | None:
    """`text` as an integer number of 10**-decimals units, or None if it is not exactly one.

    Trailing zeros past `decimals` are accepted ("1.500" with 2 decimals is 150) because they
    do not change the value; any non-zero digit past `decimals` is rejected.
    """
    if not isinstance(text, str) or len(text) > MAX_DECIMAL_CHARS:
        return None
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return None
    whole, _, frac = text.partition(".")
    if len(frac) > decimals:
        extra = frac[decimals:]
        if extra.strip("0"):
            return None
        frac = frac[:decimals]
    return int(whole) * POW10[decimals] + (int(frac.ljust(decimals, "0")) if decimals else 0)


def parse_steps(text: object, step_units: int, decimals: int) -> int | None:
    """`text` as a positive whole number of steps (ticks or lots), or None.

    `step_units` is the step expressed in 10**-decimals units (tick "0.05" at 2 decimals is 5).
    Zero, values off the step grid and values past MAX_UNITS are rejected.
    """
    units = parse_units(text, decimals)
    if units is None or units <= 0 or units > MAX_UNITS or units % step_units:
        return None
    return units // step_units


# Reports and answers format the same few prices and quantities over and over: memoised per
# decimals, each table bounded (cleared when full).
_FORMATTED: tuple[dict[int, str], ...] = tuple({} for _ in POW10)
_FORMATTED_MAX = 1 << 16


def format_units(units: int, decimals: int) -> str:
    """Canonical decimal string with exactly `decimals` decimals."""
    table = _FORMATTED[decimals]
    text = table.get(units)
    if text is None:
        text = _format_units(units, decimals)
        if len(table) >= _FORMATTED_MAX:
            table.clear()
        table[units] = text
    return text


def _format_units(units: int, decimals: int) -> str:
    sign = "-" if units < 0 else ""
    units = -units if units < 0 else units
    if decimals == 0:
        return f"{sign}{units}"
    whole, frac = divmod(units, POW10[decimals])
    return f"{sign}{whole}.{frac:0{decimals}d}"
