"""A seeded engine command mix (docs/ARCHITECTURE.md), for benchmarks and load tests.

About 50% new limit orders near the touch, 35% cancels, 10% amends and 5% marketable orders
(IOC limits through the touch and market orders), from a handful of accounts with huge
deposits, on one symbol. Buys rest below a fixed mid price and sells above it, so resting
orders never cross and the book keeps its shape; marketable orders take from the other side.

The generator learns order ids and fills from the engine's events (`observe`), so cancels
and amends name live orders. It forgets an order as soon as it makes its cancel, and applies
its own amends at once, so commands made ahead of their events (a batch, or many in flight)
never name the same order twice; only an order filled meanwhile by a taker can be named
after it closed. Same seed, same commands (given the same events back at the same points).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec

from exchange.engine.admin import MAX_ASSET_TOTAL
from exchange.model.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    PlaceOrder,
    Side,
)
from exchange.model.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
)
from exchange.model.instruments import ExchangeConfig

# Large enough never to run out in a benchmark, small enough for the engine's asset cap.
HUGE_DEPOSIT = 10**17


class _Live(msgspec.Struct, gc=False):
    """A resting order as the generator knows it (untracked by the cyclic collector, so the
    generator's own bookkeeping does not trigger collections inside timed apply() calls)."""

    order_id: int
    account_id: int
    is_buy: bool
    price: int
    qty: int


class MixGenerator:
    def __init__(
        self,
        config: ExchangeConfig,
        seed: int = 1,
        symbol: str = "BTC-USD",
        accounts: int = 16,
        levels: int = 200,
        max_lots: int = 50,
        taker_lots: int = 50,
        taker_reach: int = 10,
    ) -> None:
        self.inst = config.instruments[symbol]
        self.symbol = symbol
        self.rng = random.Random(seed)
        self.n_accounts = accounts
        self.levels = levels
        self.max_lots = max_lots
        # Marketable orders: up to `taker_lots` lots, IOC limits up to `taker_reach` ticks
        # through the mid.
        self.taker_lots = taker_lots
        self.taker_reach = taker_reach
        self.mid = self.inst.reference_ticks
        self._next_coid = 0
        # Live resting orders: a list for O(1) random choice, and its index by order id.
        self._live: list[_Live] = []
        self._pos: dict[int, int] = {}

    # ------------------------------------------------------------------ set-up
    def setup_commands(self) -> list[Command]:
        """Accounts 1..n, each with a huge deposit of the symbol's base and quote."""
        out: list[Command] = []
        # Within the engine's cap on each asset's total, however many accounts.
        amount = min(HUGE_DEPOSIT, MAX_ASSET_TOTAL // (self.n_accounts + 1))
        for i in range(1, self.n_accounts + 1):
            out.append(CreateAccount(label=f"bench-{i}"))
            out.append(Deposit(account_id=i, asset=self.inst.base, amount=amount))
            out.append(Deposit(account_id=i, asset=self.inst.quote, amount=amount))
        return out

    @property
    def live_orders(self) -> int:
        return len(self._live)

    # ------------------------------------------------------------------ commands
    def _coid(self) -> str:
        self._next_coid += 1
        return f"m{self._next_coid}"

    def _offset(self) -> int:
        # Most orders close to the touch, a tail further out.
        return 1 + min(self.levels - 1, int(self.rng.expovariate(4.0 / self.levels)))

    def resting_limit(self) -> PlaceOrder:
        """A limit order on its own side of the mid: it rests and never takes."""
        rng = self.rng
        is_buy = rng.random() < 0.5
        offset = self._offset()
        price = self.mid - offset if is_buy else self.mid + offset
        side: Side = "buy" if is_buy else "sell"
        return PlaceOrder(
            account_id=rng.randint(1, self.n_accounts), symbol=self.symbol,
            side=side, order_type="limit",
            qty=rng.randint(1, self.max_lots), price=price, client_order_id=self._coid(),
        )

    def marketable(self) -> PlaceOrder:
        rng = self.rng
        is_buy = rng.random() < 0.5
        qty = rng.randint(1, self.taker_lots)
        account_id = rng.randint(1, self.n_accounts)
        side: Side = "buy" if is_buy else "sell"
        if rng.random() < 0.5:
            return PlaceOrder(
                account_id=account_id, symbol=self.symbol, side=side, order_type="market",
                qty=qty, client_order_id=self._coid(),
            )
        through = rng.randint(1, self.taker_reach)
        price = self.mid + through if is_buy else self.mid - through
        return PlaceOrder(
            account_id=account_id, symbol=self.symbol, side=side, order_type="limit",
            qty=qty, price=price, tif="IOC", client_order_id=self._coid(),
        )

    def next_command(self) -> Command:
        rng = self.rng
        r = rng.random()
        live = self._live
        if r < 0.50 or not live:
            return self.resting_limit()
        if r < 0.85:
            o = live[rng.randrange(len(live))]
            # Forgotten at once, so that a batch made before any feedback never names it
            # twice.
            self._remove(o.order_id)
            return CancelOrder(account_id=o.account_id, symbol=self.symbol, order_id=o.order_id)
        if r < 0.95:
            o = live[rng.randrange(len(live))]
            if o.qty > 1 and rng.random() < 0.5:
                o.qty = rng.randint(1, o.qty - 1)
                return AmendOrder(
                    account_id=o.account_id, symbol=self.symbol, order_id=o.order_id,
                    new_qty=o.qty,
                )
            offset = self._offset()
            o.price = self.mid - offset if o.is_buy else self.mid + offset
            return AmendOrder(
                account_id=o.account_id, symbol=self.symbol, order_id=o.order_id,
                new_price=o.price,
            )
        return self.marketable()

    # ------------------------------------------------------------------ feedback
    def _remove(self, order_id: int) -> None:
        pos = self._pos.pop(order_id, None)
        if pos is None:
            return
        live = self._live
        last = live.pop()
        if pos < len(live):
            live[pos] = last
            self._pos[last.order_id] = pos

    def observe(self, events: Sequence[Event]) -> None:
        """Learn new resting orders, fills, cancels and amends from the engine's events."""
        for e in events:
            if isinstance(e, OrderAccepted):
                if e.tif == "GTC" and e.price is not None:
                    self._pos[e.order_id] = len(self._live)
                    self._live.append(
                        _Live(e.order_id, e.account_id, e.side == "buy", e.price, e.qty)
                    )
            elif isinstance(e, OrderCanceled | OrderExpired):
                self._remove(e.order_id)
            elif isinstance(e, OrderFilled):
                if e.status == "filled":
                    self._remove(e.order_id)
            elif isinstance(e, OrderAmended):
                pos = self._pos.get(e.order_id)
                if pos is not None and e.price is not None:
                    o = self._live[pos]
                    o.price = e.price
                    o.qty = e.qty
