"""Hot-path functions must not compile calls into dict-building CALL_FUNCTION_EX.

CPython does that for a call whose positional arguments plus twice its keyword arguments
exceed 30 (see exchange/engine/templates.py): a 15-keyword `replace(template, ...)` is four
times slower than a 14-keyword one. This keeps an added event field from silently slowing
the engine down.
"""

from __future__ import annotations

import dis
from collections.abc import Callable
from typing import Any

import pytest

from exchange.engine import base
from exchange.engine.book import Side
from exchange.engine.core import Engine

HOT: list[Callable[..., Any]] = [
    Engine.apply,
    Engine._place,
    Engine._cancel,
    Engine._amend,
    Engine._take,
    Engine._finish_taker,
    Engine._book_changed,
    Engine._cancel_order,
    Engine._reject,
    base._canceled,
    base._fill_base,
    Side.add,
    Side.rest,
    Side.unlink,
    Side.changes,
]


@pytest.mark.parametrize("func", HOT, ids=[f.__qualname__ for f in HOT])
def test_no_dict_building_calls(func: Callable[..., Any]) -> None:
    ops = [i.opname for i in dis.get_instructions(func)]
    assert "CALL_FUNCTION_EX" not in ops
