"""Account history from the report log: account.trades (fills, trade order) and
orders.history (closing events, newest first), bounded by the log and the same after a
snapshot and restore."""

from __future__ import annotations

from exchange.engine.core import Engine
from exchange.matcher.engine_port import ClassFactory
from exchange.matcher.report_log import ReportingEngine, ReportingFactory
from exchange.model.events import (
    ORDER_EVENTS,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
)
from exchange.model.queries import (
    ClosedOrders,
    FillList,
    GetAccountTrades,
    GetOrderHistory,
)
from tests.exchange.conftest import recorded_commands
from tests.exchange.matcher.test_report_log import new_engine, run

CLOSING = ("filled", "canceled", "expired")


def fills(engine: ReportingEngine, account_id: int, **kw: object) -> list[OrderFilled]:
    got = engine.answer(GetAccountTrades(account_id=account_id, **kw))  # type: ignore[arg-type]
    assert isinstance(got, FillList)
    return got.fills


def closed(engine: ReportingEngine, account_id: int, **kw: object) -> list[object]:
    got = engine.answer(GetOrderHistory(account_id=account_id, **kw))  # type: ignore[arg-type]
    assert isinstance(got, ClosedOrders)
    return list(got.orders)


def test_history_is_the_accounts_own_fills_and_closing_events() -> None:
    engine = new_engine()
    events = run(engine, recorded_commands(31, 3000), 1)
    for account_id in (1, 2):
        own = [e for e in events if isinstance(e, ORDER_EVENTS) and e.account_id == account_id]
        want_fills = [e for e in own if isinstance(e, OrderFilled)]
        assert want_fills, "the stream should fill orders of every account"
        assert fills(engine, account_id, limit=1000) == want_fills[-1000:]
        assert fills(engine, account_id, limit=3) == want_fills[-3:]
        btc = [f for f in want_fills if f.symbol == "BTC-USD"]
        assert fills(engine, account_id, symbol="BTC-USD", limit=1000) == btc[-1000:]
        start = btc[len(btc) // 2].trade_id
        assert fills(engine, account_id, symbol="BTC-USD", from_trade_id=start, limit=5) == [
            f for f in btc if f.trade_id >= start
        ][:5]
        want_closed = [
            e for e in own
            if isinstance(e, OrderFilled | OrderCanceled | OrderExpired) and e.status in CLOSING
        ]
        assert closed(engine, account_id, limit=1000) == list(reversed(want_closed))[:1000]
        assert closed(engine, account_id, limit=2) == list(reversed(want_closed))[:2]


def test_history_is_bounded_by_the_log_and_survives_restore() -> None:
    engine = new_engine(capacity=500)
    run(engine, recorded_commands(32, 2000), 1)
    got = fills(engine, 1, limit=1000)
    assert 0 < len(got) <= 500
    factory = ReportingFactory(ClassFactory(Engine), 500)
    restored = factory.restore(engine.inner.config, engine.snapshot())
    assert isinstance(restored, ReportingEngine)
    assert fills(restored, 1, limit=1000) == got
    assert closed(restored, 2, limit=1000) == closed(engine, 2, limit=1000)
