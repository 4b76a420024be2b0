"""The benchmark order mix (docs/ARCHITECTURE.md) per trading session, on each instrument's grid.

About 50% new limit orders near the touch, 35% cancels of the session's own open orders,
10% amends, 5% marketable (IOC limit through the touch) orders, spread over several symbols.
Prices stay around the reference price well inside the price band: resting buys below it,
resting sells above it, so only the marketable orders trade and the book never runs away.
Every price and quantity is a whole number of ticks/lots, formatted canonically.

This runs once per request in the generator, so draws use `random()` directly (uniform
integers as `int(random() * n)`, whose bias is below 2**-40 for these ranges) rather than
`randint`/`choice`, which cost several Python calls each, and each action carries its request
already encoded: the JSON text after the request id, spliced from per-instrument and per-side
templates and cached price and quantity strings, instead of a params dict for a JSON encoder
(the session splices in the id). `Action.params` decodes it back, for tests and debugging.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

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
    """One request to send: the wire method, the request's JSON after its id, and the mix
    kind it came from. The session stamps `scheduled_ns` when it queues the request and keeps
    the action as the request's pending entry until the answer comes."""

    kind: str
    method: str
    # `{"id":N` + body is the whole request: b',"method":"...","params":{...}}'.
    body: bytes
    client_order_id: str
    # Set for a new resting order, so the session tracks it as open once acknowledged.
    resting: OpenOrder | None = None
    scheduled_ns: int = 0

    @property
    def params(self) -> dict[str, Any]:
        """The request's params, decoded from the encoded body."""
        request: dict[str, Any] = msgspec.json.decode(b'{"id":0' + self.body)
        params: dict[str, Any] = request["params"]
        return params


def request_body(method: str, params: dict[str, Any]) -> bytes:
    """The body of a request with any params (the slow, general way: not for the hot path)."""
    return b',"method":' + msgspec.json.encode(method) + b',"params":' + (
        msgspec.json.encode(params) + b"}"
    )


def _json_safe(text: str) -> bool:
    """True when `text` needs no escaping inside a JSON string (it is spliced in as is)."""
    return msgspec.json.encode(text) == f'"{text}"'.encode()


class _Texts:
    """Per instrument: its price and quantity strings by ticks/lots (formatted once), and the
    request templates around them."""

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.prices: dict[int, str] = {}
        self.qtys: dict[int, str] = {}
        sym = inst.symbol
        if not _json_safe(sym):
            raise ValueError(f"symbol {sym!r} needs JSON escaping")
        self.place = {
            side: f',"method":"order.place","params":{{"symbol":"{sym}","side":"{side}",'
                  '"type":"limit","qty":"'
            for side in ("buy", "sell")
        }
        self.target = f'"params":{{"symbol":"{sym}","client_order_id":"'

    def price(self, ticks: int) -> str:
        text = self.prices.get(ticks)
        if text is None:
            text = self.prices[ticks] = self.inst.ticks_to_price(ticks)
        return text

    def qty(self, lots: int) -> str:
        text = self.qtys.get(lots)
        if text is None:
            text = self.qtys[lots] = self.inst.lots_to_qty(lots)
        return text


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
        if not _json_safe(tag):
            raise ValueError(f"tag {tag!r} needs JSON escaping")
        self.tag = tag
        self.rng = random.Random(seed)
        self._random = self.rng.random
        total = sum(weights)
        self._cuts = [sum(weights[: i + 1]) / total for i in range(4)]
        self.max_open = max_open
        self.open = OpenOrders()
        self._next = 0
        self._by_symbol = {i.symbol: i for i in self.instruments}
        self._texts = {i.symbol: _Texts(i) for i in self.instruments}

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
        texts = self._texts[inst.symbol]
        side = "buy" if rnd() < 0.5 else "sell"
        offset = 1 + int(rnd() * DEPTH_TICKS)
        ticks = inst.reference_ticks - offset if side == "buy" else inst.reference_ticks + offset
        lots = inst.min_lots * (1 + int(rnd() * MAX_LOTS))
        cid = self._new_cid()
        order = OpenOrder(cid, inst.symbol, side, ticks, lots)
        body = (f'{texts.place[side]}{texts.qty(lots)}","price":"{texts.price(ticks)}",'
                f'"tif":"GTC","client_order_id":"{cid}"}}}}')
        return Action(PLACE, "order.place", body.encode(), cid, order)

    def _marketable(self) -> Action:
        rnd = self._random
        inst = self._instrument()
        texts = self._texts[inst.symbol]
        side = "buy" if rnd() < 0.5 else "sell"
        sweep = DEPTH_TICKS // 2 + SWEEP_TICKS
        ticks = inst.reference_ticks + sweep if side == "buy" else inst.reference_ticks - sweep
        lots = inst.min_lots * (1 + int(rnd() * (MAX_LOTS // 4)))
        cid = self._new_cid()
        body = (f'{texts.place[side]}{texts.qty(lots)}","price":"{texts.price(ticks)}",'
                f'"tif":"IOC","client_order_id":"{cid}"}}}}')
        return Action(MARKETABLE, "order.place", body.encode(), cid)

    def _cancel(self) -> Action:
        order = self.open.pick(self.rng)
        cid = order.client_order_id
        # Forget it now: a second cancel of the same order would only earn a 3005.
        self.open.remove(cid)
        body = f',"method":"order.cancel",{self._texts[order.symbol].target}{cid}"}}}}'
        return Action(CANCEL, "order.cancel", body.encode(), cid)

    def _amend(self) -> Action:
        order = self.open.pick(self.rng)
        inst = self._by_symbol[order.symbol]
        texts = self._texts[order.symbol]
        cid = order.client_order_id
        if order.qty_lots > inst.min_lots and self._random() < 0.5:
            # Lower the quantity (keeps queue priority); stays a whole number of lots.
            order.qty_lots = max(inst.min_lots, order.qty_lots // 2)
            change = f'"new_qty":"{texts.qty(order.qty_lots)}"'
        else:
            # Move the price within the resting side's range (loses queue priority).
            offset = 1 + int(self._random() * DEPTH_TICKS)
            ref = inst.reference_ticks
            order.price_ticks = ref - offset if order.side == "buy" else ref + offset
            change = f'"new_price":"{texts.price(order.price_ticks)}"'
        body = f',"method":"order.amend",{texts.target}{cid}",{change}}}}}'
        return Action(AMEND, "order.amend", body.encode(), cid)
