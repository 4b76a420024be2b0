"""validate() must catch broken invariants, and the state table must refuse bad moves."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from exchange.engine.core import Engine
from exchange.engine.orders import TRANSITIONS, InvalidStateTransition, transition
from tests.exchange.conftest import REF, Driver


def populated(ex: Driver) -> Engine:
    ex.place(1, "buy", 5, REF - 2, client_order_id="b1")
    ex.place(2, "buy", 3, REF - 2, client_order_id="b2")
    ex.place(1, "sell", 4, REF + 2, client_order_id="s1")
    ex.place(3, "buy", 1, REF + 2, client_order_id="t")  # one fill: fees collected
    ex.engine.validate()
    return ex.engine


def _level_total(e: Engine) -> None:
    level = e._books["BTC-USD"].bids.levels[REF - 2]
    level.total += 1


def _held(e: Engine) -> None:
    e._accounts[1].balances["USD"].held += 1


def _conservation(e: Engine) -> None:
    e._accounts[0].balances["BTC"].available += 1


def _negative(e: Engine) -> None:
    bal = e._accounts[2].balances["ETH"]
    e._net_deposits["ETH"] -= bal.available + 1
    bal.available = -1


def _link(e: Engine) -> None:
    level = e._books["BTC-USD"].bids.levels[REF - 2]
    assert level.tail is not None
    level.tail.prev = None


def _index(e: Engine) -> None:
    e._books["BTC-USD"].asks.keys.append(-(REF + 50))


def _open_orders(e: Engine) -> None:
    acct = e._accounts[2]
    order_id = next(iter(acct.open))
    del acct.open[order_id]


def _coid(e: Engine) -> None:
    acct = e._accounts[1]
    acct.by_coid["ghost"] = acct.by_coid.pop("b1")


def _crossed(e: Engine) -> None:
    book = e._books["BTC-USD"]
    level = book.asks.levels[-(REF + 2)]
    assert level.head is not None
    # Move the ask level below the bid without telling anyone else.
    del book.asks.levels[-(REF + 2)]
    book.asks.keys.remove(-(REF + 2))
    level.price = REF - 3
    level.head.price = REF - 3
    book.asks.levels[-(REF - 3)] = level
    book.asks.keys.append(-(REF - 3))


def _status(e: Engine) -> None:
    order = e._accounts[1].by_coid["b1"]
    order.status = "filled"


CORRUPTIONS: list[Callable[[Engine], None]] = [
    _level_total, _held, _conservation, _negative, _link, _index, _open_orders, _coid,
    _crossed, _status,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__ for c in CORRUPTIONS])
def test_validate_catches(ex: Driver, corrupt: Callable[[Engine], None]) -> None:
    engine = populated(ex)
    corrupt(engine)
    with pytest.raises(AssertionError):
        engine.validate()


@pytest.mark.parametrize("status", ["filled", "canceled", "expired", "rejected"])
@pytest.mark.parametrize("event", ["fill", "partial_fill", "cancel", "expire", "amend"])
def test_terminal_statuses_have_no_way_out(status: str, event: str) -> None:
    with pytest.raises(InvalidStateTransition):
        transition(status, event)  # type: ignore[arg-type]


def test_state_table() -> None:
    assert transition("new", "partial_fill") == "partially_filled"
    assert transition("partially_filled", "fill") == "filled"
    assert transition("new", "amend") == "new"
    assert all(s in ("new", "partially_filled") for s, _ in TRANSITIONS)
    with pytest.raises(InvalidStateTransition):
        transition("new", "accept")
