"""One test per reject code and per bad input: the right code, and nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.model.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    CreateApiKey,
    Deposit,
    HaltSymbol,
    PlaceOrder,
    ResumeSymbol,
    RevokeApiKey,
    Withdraw,
)
from exchange.model.events import CancelRejected, CommandRejected, OrderRejected
from tests.exchange.conftest import BTC, REF, Driver, business_hash

LIMIT: dict[str, Any] = {
    "account_id": 1, "symbol": "BTC-USD", "side": "buy", "order_type": "limit", "qty": 10,
    "price": REF, "client_order_id": "new",
}


def with_book(ex: Driver) -> Driver:
    """A resting ask at REF (account 2), a resting bid (account 1, client id "open")."""
    ex.place(2, "sell", 5, REF, client_order_id="ask")
    ex.place(1, "buy", 5, REF - 10, client_order_id="open")
    return ex


PLACE_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("unknown symbol", {"symbol": "DOGE-USD"}, 1003),
    ("zero qty", {"qty": 0}, 1002),
    ("negative qty", {"qty": -1}, 1002),
    ("qty past max", {"qty": BTC.max_lots + 1}, 1002),
    ("limit without price", {"price": None}, 1002),
    ("market with price", {"order_type": "market"}, 1002),
    ("zero price", {"price": 0}, 1002),
    ("negative price", {"price": -5}, 1002),
    ("empty client id", {"client_order_id": ""}, 1002),
    ("client id too long", {"client_order_id": "x" * 37}, 1002),
    ("post-only IOC", {"post_only": True, "tif": "IOC"}, 1002),
    ("post-only market", {"post_only": True, "order_type": "market", "price": None}, 1002),
    ("unknown account", {"account_id": 99}, 3008),
    ("fee account", {"account_id": 0}, 3008),
    ("duplicate client id", {"client_order_id": "open"}, 3004),
    ("above band", {"price": REF * 11 // 10 + 1}, 3002),
    ("below band", {"side": "sell", "price": REF * 9 // 10 - 1}, 3002),
    ("post-only would take", {"post_only": True}, 3003),
    ("quote short", {"qty": BTC.max_lots, "price": REF - 20}, 3001),
    ("base short", {"side": "sell", "qty": BTC.max_lots, "price": REF + 20}, 3001),
    ("market sell short", {"side": "sell", "order_type": "market", "price": None,
                           "qty": BTC.max_lots}, 3001),
    ("FOK short", {"tif": "FOK", "qty": 6}, 3006),
    ("market sell, no bids in band", {"side": "sell", "order_type": "market", "price": None,
                                      "account_id": 3}, 3006),
]


@pytest.mark.parametrize(("name", "fields", "code"), PLACE_CASES, ids=[c[0] for c in PLACE_CASES])
def test_place_reject(ex: Driver, name: str, fields: dict[str, Any], code: int) -> None:
    with_book(ex)
    if name == "market sell, no bids in band":
        ex.cancel(1, client_order_id="open")
    before = business_hash(ex.engine)
    events = ex.do(PlaceOrder(**{**LIMIT, **fields}))
    assert len(events) == 1
    rej = events[0]
    assert isinstance(rej, OrderRejected)
    assert (rej.code, rej.order_id, rej.status, rej.leaves_qty) == (code, 0, "rejected", 0)
    assert business_hash(ex.engine) == before


def test_halted_symbol_rejects_place_and_amend_but_cancels(ex: Driver) -> None:
    with_book(ex)
    ex.do(HaltSymbol(symbol="BTC-USD"))
    before = business_hash(ex.engine)
    rej = ex.do(PlaceOrder(**LIMIT))[0]
    assert isinstance(rej, OrderRejected) and rej.code == 3007
    am = ex.amend(1, client_order_id="open", new_qty=1)[0]
    assert isinstance(am, CancelRejected) and am.code == 3007 and am.amend
    assert business_hash(ex.engine) == before
    assert ex.cancel(1, client_order_id="open")[0].reason == "user"  # type: ignore[union-attr]
    ex.do(ResumeSymbol(symbol="BTC-USD"))
    assert ex.do(PlaceOrder(**LIMIT))[0].order_id == 3  # type: ignore[union-attr]


CANCEL_CASES: list[tuple[str, Command, int]] = [
    ("cancel unknown symbol", CancelOrder(account_id=1, symbol="X", order_id=2), 1003),
    ("cancel without ids", CancelOrder(account_id=1, symbol="BTC-USD"), 1002),
    ("cancel unknown id", CancelOrder(account_id=1, symbol="BTC-USD", order_id=77), 3005),
    ("cancel foreign id", CancelOrder(account_id=2, symbol="BTC-USD", order_id=2), 3005),
    ("cancel unknown account", CancelOrder(account_id=50, symbol="BTC-USD", order_id=2), 3005),
    ("cancel wrong symbol", CancelOrder(account_id=1, symbol="ETH-USD", order_id=2), 3005),
    ("cancel ids disagree",
     CancelOrder(account_id=1, symbol="BTC-USD", order_id=2, client_order_id="ask"), 3005),
    ("cancel filled order", CancelOrder(account_id=3, symbol="BTC-USD", order_id=3), 3005),
    ("amend unknown symbol", AmendOrder(account_id=1, symbol="X", order_id=2, new_qty=1), 1003),
    ("amend without ids", AmendOrder(account_id=1, symbol="BTC-USD", new_qty=1), 1002),
    ("amend without changes", AmendOrder(account_id=1, symbol="BTC-USD", order_id=2), 1002),
    ("amend negative qty",
     AmendOrder(account_id=1, symbol="BTC-USD", order_id=2, new_qty=-1), 1002),
    ("amend qty past max",
     AmendOrder(account_id=1, symbol="BTC-USD", order_id=2, new_qty=BTC.max_lots + 1), 1002),
    ("amend zero price",
     AmendOrder(account_id=1, symbol="BTC-USD", order_id=2, new_price=0), 1002),
    ("amend foreign", AmendOrder(account_id=2, symbol="BTC-USD", order_id=2, new_qty=1), 3005),
    ("amend out of band",
     AmendOrder(account_id=1, symbol="BTC-USD", order_id=2, new_price=REF * 2), 3002),
    ("amend short of quote",
     AmendOrder(account_id=1, symbol="BTC-USD", order_id=2, new_qty=BTC.max_lots), 3001),
]


@pytest.mark.parametrize(("name", "command", "code"), CANCEL_CASES,
                         ids=[c[0] for c in CANCEL_CASES])
def test_cancel_and_amend_reject(ex: Driver, name: str, command: Command, code: int) -> None:
    with_book(ex)
    ex.place(3, "sell", 1, REF - 10, client_order_id="fill-me")  # fills into order 2 partly
    ex.place(2, "sell", 1, REF + 7)  # order 4; order 9 never existed
    before = business_hash(ex.engine)
    events = ex.do(command)
    assert len(events) == 1
    rej = events[0]
    assert isinstance(rej, CancelRejected)
    assert rej.code == code
    assert rej.amend == isinstance(command, AmendOrder)
    assert business_hash(ex.engine) == before


OPERATOR_CASES: list[tuple[str, Command, int]] = [
    ("deposit unknown asset", Deposit(account_id=1, asset="DOGE", amount=5), 1002),
    ("deposit zero", Deposit(account_id=1, asset="USD", amount=0), 1002),
    ("deposit negative", Deposit(account_id=1, asset="USD", amount=-5), 1002),
    ("deposit unknown account", Deposit(account_id=42, asset="USD", amount=5), 3008),
    ("deposit past the asset cap", Deposit(account_id=1, asset="USD", amount=2**62), 1002),
    ("deposit into the fee account", Deposit(account_id=0, asset="USD", amount=5), 3008),
    ("withdraw unknown asset", Withdraw(account_id=1, asset="DOGE", amount=5), 1002),
    ("withdraw zero", Withdraw(account_id=1, asset="USD", amount=0), 1002),
    ("withdraw held funds", Withdraw(account_id=1, asset="USD", amount=10**12), 3001),
    ("withdraw unknown account", Withdraw(account_id=42, asset="USD", amount=5), 3008),
    ("api key unknown account",
     CreateApiKey(account_id=42, api_key="k2", secret="s"), 3008),
    ("api key for fee account", CreateApiKey(account_id=0, api_key="k2", secret="s"), 3008),
    ("duplicate api key", CreateApiKey(account_id=2, api_key="k1", secret="s"), 3009),
    ("empty api key", CreateApiKey(account_id=2, api_key="", secret="s"), 1002),
    ("empty permissions",
     CreateApiKey(account_id=2, api_key="k3", secret="s", permissions=()), 1002),
    ("revoke unknown api key", RevokeApiKey(api_key="k2"), 3010),
    ("revoke empty api key", RevokeApiKey(api_key=""), 3010),
    ("halt unknown symbol", HaltSymbol(symbol="X"), 1003),
    ("resume unknown symbol", ResumeSymbol(symbol="X"), 1003),
    ("cancel all unknown symbol", CancelAll(account_id=1, symbol="X"), 1003),
    ("cancel all unknown account", CancelAll(account_id=42), 3008),
]


@pytest.mark.parametrize(("name", "command", "code"), OPERATOR_CASES,
                         ids=[c[0] for c in OPERATOR_CASES])
def test_operator_reject(ex: Driver, name: str, command: Command, code: int) -> None:
    with_book(ex)
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s"))
    before = business_hash(ex.engine)
    events = ex.do(command)
    assert len(events) == 1
    assert isinstance(events[0], CommandRejected) and events[0].code == code
    assert business_hash(ex.engine) == before


def test_seq_must_increase(ex: Driver) -> None:
    with pytest.raises(ValueError):
        ex.engine.apply(HaltSymbol(symbol="BTC-USD"), ex.seq, 0)
    with pytest.raises(ValueError):
        ex.engine.apply(HaltSymbol(symbol="BTC-USD"), ex.seq - 1, 0)
