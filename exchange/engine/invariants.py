"""Every invariant of the engine's state, checked from scratch (Engine.validate).

An AssertionError names the first broken one. Slow (it walks every order); for tests, replay
checks and operators, never the hot path.
"""

from __future__ import annotations

from exchange.engine.accounts import FEE_ACCOUNT
from exchange.engine.base import EngineBase
from exchange.engine.orders import CLOSED_MASK, CLOSED_SLOTS, Order
from exchange.model.commands import MAX_KEY_LIMIT


class Invariants(EngineBase):
    def validate(self) -> None:
        """Raise AssertionError on any broken invariant."""
        resting: dict[int, Order] = {}
        held: dict[tuple[int, str], int] = {}
        for book in self._books.values():
            book.validate()
            inst = book.inst
            for o in book.bids.orders() + book.asks.orders():
                assert o.order_id not in resting, "order twice in the books"
                assert 0 < o.order_id < self._next_order_id
                resting[o.order_id] = o
                leaves = o.qty - o.cum_qty
                assert o.price is not None
                if o.side == "buy":
                    key = (o.account_id, inst.quote)
                    amount = o.price * leaves * inst.quote_units_per_tick_lot
                else:
                    key = (o.account_id, inst.base)
                    amount = leaves * inst.base_units_per_lot
                held[key] = held.get(key, 0) + amount
            for o in book.stop_orders():
                assert o.order_id not in resting, "stop order also in the books"
                assert 0 < o.order_id < self._next_order_id
                resting[o.order_id] = o
                bal, amount = self._stop_hold(book, o)
                key = (o.account_id, inst.quote if o.side == "buy" else inst.base)
                assert self._accounts[o.account_id].balances[key[1]] is bal
                held[key] = held.get(key, 0) + amount
        totals = dict.fromkeys(self._assets, 0)
        open_count = 0
        for account_id, acct in self._accounts.items():
            assert acct.account_id == account_id
            assert account_id < self._next_account_id
            ids = list(acct.open)
            assert ids == sorted(ids), "open orders out of id order"
            assert len(acct.by_coid) == len(acct.open)
            for order_id, o in acct.open.items():
                assert resting.get(order_id) is o, "open order not in its book or stops"
                assert o.account_id == account_id
                assert acct.by_coid.get(o.client_order_id) is o
            open_count += len(acct.open)
            assert list(acct.balances) == self._assets
            for name, bal in acct.balances.items():
                assert bal.available >= 0, f"negative available {account_id} {name}"
                assert bal.held == held.get((account_id, name), 0), (
                    f"held {account_id} {name}: {bal.held} != {held.get((account_id, name), 0)}"
                )
                totals[name] += bal.available + bal.held
        assert open_count == len(resting), "resting order without an account"
        assert not self._accounts[FEE_ACCOUNT].open
        for name in self._assets:
            assert totals[name] == self._net_deposits[name], f"{name} not conserved"
        assert len(self._closed) == CLOSED_SLOTS
        closed_orders = self._closed
        for closed in filter(None, closed_orders):  # C-level skip of the empty slots
            assert closed_orders[closed.order_id & CLOSED_MASK] is closed, "closed slot"
            assert closed.status in ("filled", "canceled", "expired")
            assert closed.level is None and closed.prev is None and closed.next is None
        for api in self._api_keys.values():
            assert api.account_id in self._accounts
            assert 0 <= api.orders_limit <= MAX_KEY_LIMIT, "key orders limit"
            assert 0 <= api.requests_limit <= MAX_KEY_LIMIT, "key requests limit"
