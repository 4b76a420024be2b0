"""The benchmark order mix (docs/ARCHITECTURE.md) per trading session, on each instrument's grid.

About 50% new limit orders near the touch, 35% cancels of the session's own open orders,
10% amends, 5% marketable (IOC limit through the touch) orders, spread over several symbols.
Prices stay around the reference price well inside the price band: resting buys below it,
resting sells above it, so only the marketable orders trade and the book never runs away.
Every price and quantity is a whole number of ticks/lots, formatted canonically.

This runs once per request in the generator, so draws use `random()` directly (uniform
integers as `int(random() * n)`, whose bias is below 2**-40 for these ranges) rather than
`randint`/`choice`, which cost several Python calls each.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exchange.model.instruments import Instrument

PLACE, CANCEL, AMEND, MARKETABLE = "place", "cancel", "amend", "marketable"
# Cumulative weights for PLACE, CANCEL, AMEND, MARKETABLE (50/35/10/5).
DEFAULT_WEIGHTS: tuple[int, int, int, int] = (50, 35, 10, 5)
# Resting orders sit 1..DEPTH_TICKS ticks away from the reference price; marketable orders
# cross it by SWEEP_TICKS, so they reach the touch and a few levels behind it.
DEPTH_TICKS = 50
SWEEP_TICKS = 20
MAX_LOTS = 20


@dataclass(slots=True)
class OpenOrder:
    client_order_id: str
    symbol: str
    side: str
    price_ticks: int
    qty_lots: int


@dataclass(slots=True)
class OpenOrders:
    """The session's resting orders: O(1) add, remove and uniform random pick."""

    items: list[OpenOrder] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, order: OpenOrder) -> None:
        if order.client_order_id in self.index:
            return
        self.index[order.client_order_id] = len(self.items)
        self.items.append(order)

    def get(self, client_order_id: str) -> OpenOrder | None:
        pos = self.index.get(client_order_id)
        return None if pos is None else self.items[pos]

    def remove(self, client_order_id: str) -> OpenOrder | None:
        pos = self.index.pop(client_order_id, None)
        if pos is None:
            return None
        order = self.items[pos]
        last = self.items.pop()
        if last is not order:
            self.items[pos] = last
            self.index[last.client_order_id] = pos
        return order

    def pick(self, rng: random.Random) -> OpenOrder:
        items = self.items
        return items[int(rng.random() * len(items))]


@dataclass(slots=True)
class Action:
    """One request to send: the wire method, its params, and the mix kind it came from."""

    kind: str
    method: str
    params: dict[str, Any]
    client_order_id: str
    # Set for a new resting order, so the session tracks it as open once acknowledged.
    resting: OpenOrder | None = None


class Mix:
    """Draws the next action for one session. Deterministic for a given seed."""

    def __init__(
        self,
        instruments: Sequence[Instrument],
        tag: str,
        seed: int,
        weights: tuple[int, int, int, int] = DEFAULT_WEIGHTS,
        max_open: int = 400,
    ) -> None:
        if not instruments:
            raise ValueError("the mix needs at least one instrument")
        self.instruments = list(instruments)
        self.tag = tag
        self.rng = random.Random(seed)
        self._random = self.rng.random
        total = sum(weights)
        self._cuts = [sum(weights[: i + 1]) / total for i in range(4)]
        self.max_open = max_open
        self.open = OpenOrders()
        self._next = 0
        self._by_symbol = {i.symbol: i for i in self.instruments}

    def _new_cid(self) -> str:
        self._next += 1
        return f"{self.tag}-{self._next:x}"

    def _draw_kind(self) -> str:
        r = self._random()
        cuts = self._cuts
        if r < cuts[0]:
            return PLACE
        if r < cuts[1]:
            return CANCEL
        if r < cuts[2]:
            return AMEND
        return MARKETABLE

    def next_action(self) -> Action:
        kind = self._draw_kind()
        if kind is PLACE:
            # A session never holds more than max_open resting orders: bounded book and funds.
            return self._cancel() if len(self.open) >= self.max_open else self._place()
        if kind is MARKETABLE:
            return self._marketable()
        if not self.open:
            return self._place()
        return self._cancel() if kind is CANCEL else self._amend()

    def _instrument(self) -> Instrument:
        instruments = self.instruments
        return instruments[int(self._random() * len(instruments))]

    def _place(self) -> Action:
        rnd = self._random
        inst = self._instrument()
        side = "buy" if rnd() < 0.5 else "sell"
        offset = 1 + int(rnd() * DEPTH_TICKS)
        ticks = inst.reference_ticks - offset if side == "buy" else inst.reference_ticks + offset
        lots = inst.min_lots * (1 + int(rnd() * MAX_LOTS))
        cid = self._new_cid()
        order = OpenOrder(cid, inst.symbol, side, ticks, lots)
        params = {
            "symbol": inst.symbol,
            "side": side,
            "type": "limit",
            "qty": inst.lots_to_qty(lots),
            "price": inst.ticks_to_price(ticks),
            "tif": "GTC",
            "client_order_id": cid,
        }
        return Action(PLACE, "order.place", params, cid, order)

    def _marketable(self) -> Action:
        rnd = self._random
        inst = self._instrument()
        side = "buy" if rnd() < 0.5 else "sell"
        sweep = DEPTH_TICKS // 2 + SWEEP_TICKS
        ticks = inst.reference_ticks + sweep if side == "buy" else inst.reference_ticks - sweep
        lots = inst.min_lots * (1 + int(rnd() * (MAX_LOTS // 4)))
        cid = self._new_cid()
        params = {
            "symbol": inst.symbol,
            "side": side,
            "type": "limit",
            "qty": inst.lots_to_qty(lots),
            "price": inst.ticks_to_price(ticks),
            "tif": "IOC",
            "client_order_id": cid,
        }
        return Action(MARKETABLE, "order.place", params, cid)

    def _cancel(self) -> Action:
        order = self.open.pick(self.rng)
        # Forget it now: a second cancel of the same order would only earn a 3005.
        self.open.remove(order.client_order_id)
        params = {"symbol": order.symbol, "client_order_id": order.client_order_id}
        return Action(CANCEL, "order.cancel", params, order.client_order_id)

    def _amend(self) -> Action:
        order = self.open.pick(self.rng)
        inst = self._by_symbol[order.symbol]
        params: dict[str, Any] = {"symbol": order.symbol, "client_order_id": order.client_order_id}
        if order.qty_lots > inst.min_lots and self._random() < 0.5:
            # Lower the quantity (keeps queue priority); stays a whole number of lots.
            order.qty_lots = max(inst.min_lots, order.qty_lots // 2)
            params["new_qty"] = inst.lots_to_qty(order.qty_lots)
        else:
            # Move the price within the resting side's range (loses queue priority).
            offset = 1 + int(self._random() * DEPTH_TICKS)
            ref = inst.reference_ticks
            order.price_ticks = ref - offset if order.side == "buy" else ref + offset
            params["new_price"] = inst.ticks_to_price(order.price_ticks)
        return Action(AMEND, "order.amend", params, order.client_order_id)
