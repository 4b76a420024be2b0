"""Engine state <-> snapshot records (exchange.engine.state), for snapshot() and restore()."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.engine.accounts import Account, Balance
from exchange.engine.admin import ApiKey
from exchange.engine.orders import CLOSED_MASK, Order
from exchange.engine.state import (
    STATE_VERSION,
    AccountRecord,
    ApiKeyRecord,
    BalanceRecord,
    BookRecord,
    EngineState,
    OrderRecord,
)

if TYPE_CHECKING:
    from exchange.engine.core import Engine


def _record(o: Order) -> OrderRecord:
    return OrderRecord(
        o.order_id, o.account_id, o.symbol, o.side, o.order_type, o.tif, o.post_only, o.price,
        o.qty, o.cum_qty, o.cum_notional, o.status, o.client_order_id, o.session_id, o.stp,
        o.created_seq, o.created_ts, o.updated_ts,
    )


def _order(r: OrderRecord) -> Order:
    return Order(
        r.order_id, r.account_id, r.symbol, r.side, r.order_type, r.tif, r.post_only, r.price,
        r.qty, r.cum_qty, r.cum_notional, r.status, r.client_order_id, r.session_id, r.stp,
        r.created_seq, r.created_ts, r.updated_ts,
    )


def to_state(engine: Engine) -> EngineState:
    """The engine's whole state as records, in an order fixed by the state itengine."""
    return EngineState(
        version=STATE_VERSION,
        last_seq=engine.last_seq,
        next_order_id=engine._next_order_id,
        next_exec_id=engine._exec_id + 1,
        next_account_id=engine._next_account_id,
        net_deposits=list(engine._net_deposits.items()),
        accounts=[
            AccountRecord(
                a.account_id, a.label,
                [BalanceRecord(n, b.available, b.held) for n, b in a.balances.items()],
            )
            for a in engine._accounts.values()
        ],
        api_keys=[
            ApiKeyRecord(k.api_key, k.account_id, k.secret, k.permissions)
            for k in engine._api_keys.values()
        ],
        books=[
            BookRecord(
                b.symbol, b.halted, b.last_price, b.book_seq, b.trade_id, list(b.trades),
                [_record(o) for o in b.bids.orders()],
                [_record(o) for o in b.asks.orders()],
            )
            for b in engine._books.values()
        ],
        closed=[_record(o) for o in engine._closed if o is not None],
    )


def load_state(engine: Engine, state: EngineState) -> None:
    """Fill a fresh engine from `state`, rebuilding the same insertion orders."""
    if state.version != STATE_VERSION:
        raise ValueError(f"snapshot version {state.version} is not {STATE_VERSION}")
    assets = {name for name, _ in state.net_deposits}
    symbols = {b.symbol for b in state.books}
    if assets != set(engine._assets) or symbols != set(engine._books):
        raise ValueError(
            f"snapshot is for assets {sorted(assets)} and symbols {sorted(symbols)}, "
            f"not this config's {sorted(engine._assets)} and {sorted(engine._books)}"
        )
    engine.last_seq = state.last_seq
    engine._next_order_id = state.next_order_id
    engine._exec_id = state.next_exec_id - 1
    engine._next_account_id = state.next_account_id
    engine._net_deposits = dict(state.net_deposits)
    engine._accounts = {}
    for ar in state.accounts:
        acct = Account(ar.account_id, ar.label, engine._assets)
        for br in ar.balances:
            acct.balances[br.asset] = Balance(br.available, br.held)
        engine._accounts[ar.account_id] = acct
    for kr in state.api_keys:
        engine._api_keys[kr.api_key] = ApiKey(
            kr.api_key, kr.account_id, kr.secret, kr.permissions
        )
    resting: list[Order] = []
    for br2 in state.books:
        book = engine._books[br2.symbol]
        book.halted = br2.halted
        book.last_price = br2.last_price
        book.book_seq = br2.book_seq
        book.trade_id = br2.trade_id
        book.trades.extend(br2.trades)
        for side, records in ((book.bids, br2.bids), (book.asks, br2.asks)):
            for r in records:
                o = _order(r)
                assert o.price is not None
                side.add(o, o.price, o.qty - o.cum_qty)
                resting.append(o)
            side.touched.clear()
    resting.sort(key=lambda o: o.order_id)
    for o in resting:
        acct = engine._accounts[o.account_id]
        acct.open[o.order_id] = o
        acct.by_coid[o.client_order_id] = o
    for r in state.closed:
        engine._closed[r.order_id & CLOSED_MASK] = _order(r)

