"""Engine state <-> snapshot records (exchange.engine.state): snapshot(), restore()."""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import Self

from exchange.engine.accounts import Account, ApiKey, Balance
from exchange.engine.base import EngineBase
from exchange.engine.book import Book
from exchange.engine.orders import CLOSED_MASK, Order
from exchange.engine.state import (
    DECODER,
    ENCODER,
    LOADABLE_VERSIONS,
    STATE_VERSION,
    AccountRecord,
    ApiKeyRecord,
    BalanceRecord,
    BookRecord,
    EngineState,
    OrderRecord,
)
from exchange.model.candles import SymbolCandles
from exchange.model.instruments import IMMUTABLE_FIELDS, ExchangeConfig
from exchange.model.orders import ORDER_FIELDS

_order_fields = attrgetter(*ORDER_FIELDS)


def _record(o: Order) -> OrderRecord:
    return OrderRecord(*_order_fields(o))


def _order(r: OrderRecord) -> Order:
    return Order(*_order_fields(r))


def _clash(config: ExchangeConfig, live: ExchangeConfig) -> str:
    """What of `config` the snapshot's `live` set lacks or means otherwise; "" when none."""
    for name, asset in config.assets.items():
        if live.assets.get(name) != asset:
            return f"asset {name} is not in it with {asset.decimals} decimals"
    for symbol, inst in config.instruments.items():
        have = live.instruments.get(symbol)
        for field in IMMUTABLE_FIELDS:
            if have is None or getattr(have, field) != getattr(inst, field):
                return f"instrument {symbol} is not in it with the config's {field}"
    return ""


class Snapshots(EngineBase):
    """`snapshot()`, `restore()` and `state_hash()`, as methods of the engine."""

    def snapshot(self) -> bytes:
        return ENCODER.encode(self._to_state())

    @classmethod
    def restore(cls, config: ExchangeConfig, data: bytes) -> Self:
        engine = cls(config)
        engine._load_state(DECODER.decode(data))
        return engine

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    def _to_state(self) -> EngineState:
        """The engine's whole state as records, in an order fixed by the state itself."""
        return EngineState(
            version=STATE_VERSION,
            last_seq=self.last_seq,
            next_order_id=self._next_order_id,
            next_exec_id=self._exec_id + 1,
            next_account_id=self._next_account_id,
            net_deposits=list(self._net_deposits.items()),
            accounts=[
                AccountRecord(
                    a.account_id, a.label,
                    [BalanceRecord(n, b.available, b.held) for n, b in a.balances.items()],
                )
                for a in self._accounts.values()
            ],
            api_keys=[
                ApiKeyRecord(k.api_key, k.account_id, k.secret, k.permissions,
                             k.orders_limit, k.requests_limit)
                for k in self._api_keys.values()
            ],
            books=[
                BookRecord(
                    b.symbol, b.halted, b.last_price, b.book_seq, b.trade_id, list(b.trades),
                    [_record(o) for o in b.bids.orders()],
                    [_record(o) for o in b.asks.orders()],
                    b.candles.records(),
                    [_record(o) for o in b.stop_orders()],
                )
                for b in self._books.values()
            ],
            closed=[_record(o) for o in self._closed if o is not None],
            assets=list(self.config.assets.values()),
            instruments=list(self.config.instruments.values()),
        )

    def _load_state(self, state: EngineState) -> None:
        """Fill this fresh engine from `state`, rebuilding the same insertion orders."""
        if state.version not in LOADABLE_VERSIONS:
            raise ValueError(f"snapshot version {state.version} is not one of "
                             f"{LOADABLE_VERSIONS}")
        if state.version >= 3:
            # The snapshot's own set is the truth: the config is only where it started
            # (exchange.matcher.params checks the config against that start). Live
            # parameters may differ from the config's; what stored integers mean may not.
            live = ExchangeConfig(
                assets={a.name: a for a in state.assets},
                instruments={i.symbol: i for i in state.instruments},
            )
            clash = _clash(self.config, live)
            if clash:
                raise ValueError(f"snapshot does not fit this config: {clash}")
            self.config = live
            self._assets = list(self.config.assets)
            self._books = {s: Book(i) for s, i in self.config.instruments.items()}
        assets = {name for name, _ in state.net_deposits}
        symbols = {b.symbol for b in state.books}
        if assets != set(self._assets) or symbols != set(self._books):
            raise ValueError(
                f"snapshot is for assets {sorted(assets)} and symbols {sorted(symbols)}, "
                f"not this config's {sorted(self._assets)} and {sorted(self._books)}"
            )
        self.last_seq = state.last_seq
        self._next_order_id = state.next_order_id
        self._exec_id = state.next_exec_id - 1
        self._next_account_id = state.next_account_id
        self._net_deposits = dict(state.net_deposits)
        self._accounts = {}
        for ar in state.accounts:
            acct = Account(ar.account_id, ar.label, self._assets)
            for br in ar.balances:
                acct.balances[br.asset] = Balance(br.available, br.held)
            self._accounts[ar.account_id] = acct
        for kr in state.api_keys:
            self._api_keys[kr.api_key] = ApiKey(
                kr.api_key, kr.account_id, kr.secret, kr.permissions,
                kr.orders_limit, kr.requests_limit,
            )
        resting: list[Order] = []  # every open order, in the books or waiting as a stop
        for br2 in state.books:
            book = self._books[br2.symbol]
            book.halted = br2.halted
            book.last_price = br2.last_price
            book.book_seq = br2.book_seq
            book.trade_id = br2.trade_id
            book.trades.extend(br2.trades)
            book.candles = SymbolCandles(br2.candles)
            for side, records in ((book.bids, br2.bids), (book.asks, br2.asks)):
                for r in records:
                    o = _order(r)
                    assert o.price is not None
                    side.add(o, o.price, o.shown_qty or o.qty - o.cum_qty)
                    resting.append(o)
                side.touched.clear()
            for r in br2.stops:
                o = _order(r)
                book.add_stop(o)
                resting.append(o)
        resting.sort(key=lambda o: o.order_id)
        for o in resting:
            acct = self._accounts[o.account_id]
            acct.open[o.order_id] = o
            acct.by_coid[o.client_order_id] = o
        for r in state.closed:
            self._closed[r.order_id & CLOSED_MASK] = _order(r)
