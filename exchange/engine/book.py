"""One symbol's order book: price-time priority with a sorted price index per side.

Each side keeps `levels` (key -> Level) and `keys`, the sorted list of its level keys, with
the best level last so that taking the best level is `keys[-1]` and removing it is a `pop()`.
The key of a bid level is its price, the key of an ask level is minus its price, so that for
both sides "better" means "larger key".

Stop orders not yet triggered wait off the book in `stop_buys` and `stop_sells`, sorted so
that the ones a trade price reaches first come first (see `add_stop`).

The book also carries the symbol's market-data counters and the levels touched by the
command being applied (`touched`: price -> total before the command), from which the engine
builds at most one BookChanged per command.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque

from exchange.engine.orders import OPEN_STATUSES, Level, Order
from exchange.engine.templates import SymbolTemplates
from exchange.model.candles import SymbolCandles
from exchange.model.events import TradeExecuted
from exchange.model.instruments import Instrument

TRADES_KEPT = 1000


class Side:
    __slots__ = ("is_bid", "keys", "levels", "touched")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []
        self.touched: dict[int, int] = {}

    def add(self, order: Order, price: int, leaves: int) -> None:
        """Append `order` (with `leaves` open lots) at the back of its price level."""
        key = price if self.is_bid else -price
        level = self.levels.get(key)
        if level is None:
            level = Level(price)
            self.levels[key] = level
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        touched = self.touched
        if price not in touched:
            touched[price] = level.total
        level.total += leaves
        tail = level.tail
        order.level = level
        # One int object per level rather than one per order: less memory per resting order,
        # and no cold int to free when it leaves.
        order.price = level.price
        order.prev = tail
        order.next = None
        if tail is None:
            level.head = order
        else:
            tail.next = order
        level.tail = order

    def rest(self, order: Order, price: int, leaves: int) -> int:
        """`add` for a command that changes only this level: no tracking; the new total.
        `order.next` must already be None (a new order, or one just unlinked)."""
        key = price if self.is_bid else -price
        level = self.levels.get(key)
        if level is None:
            level = Level(price)
            self.levels[key] = level
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        total = level.total + leaves
        level.total = total
        tail = level.tail
        order.level = level
        order.price = level.price
        order.prev = tail
        if tail is None:
            level.head = order
        else:
            tail.next = order
        level.tail = order
        return total

    def unlink(self, order: Order, leaves: int) -> None:
        """Take `order` (with `leaves` open lots) out of its level; drop the level if empty."""
        level = order.level
        assert level is not None
        touched = self.touched
        price = level.price
        if price not in touched:
            touched[price] = level.total
        level.total -= leaves
        prev = order.prev
        nxt = order.next
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            level.tail = prev
        else:
            nxt.prev = prev
        order.prev = order.next = order.level = None
        if level.head is None:
            self.drop_level(price)

    def drop_level(self, price: int) -> None:
        key = price if self.is_bid else -price
        del self.levels[key]
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def best_price(self) -> int | None:
        if not self.keys:
            return None
        key = self.keys[-1]
        return key if self.is_bid else -key

    def depth(self, n: int) -> list[tuple[int, int]]:
        """Up to `n` levels as (price, total lots), best first."""
        out: list[tuple[int, int]] = []
        levels = self.levels
        for key in reversed(self.keys):
            if len(out) >= n:
                break
            level = levels[key]
            out.append((level.price, level.total))
        return out

    def orders(self) -> list[Order]:
        """Every resting order, best level first, FIFO within a level."""
        out: list[Order] = []
        levels = self.levels
        for key in reversed(self.keys):
            order = levels[key].head
            while order is not None:
                out.append(order)
                order = order.next
        return out

    def changes(self) -> list[tuple[int, int]]:
        """Levels whose total differs from before the command, best first; resets tracking."""
        touched = self.touched
        out: list[tuple[int, int]] = []
        levels = self.levels
        sign = 1 if self.is_bid else -1
        for price, before in touched.items():
            level = levels.get(price * sign)
            total = 0 if level is None else level.total
            if total != before:
                out.append((price, total))
        touched.clear()
        if len(out) > 1:
            out.sort(reverse=self.is_bid)
        return out

    def validate(self, symbol: str) -> int:
        """Check this side's invariants; returns the number of resting orders."""
        side = "buy" if self.is_bid else "sell"
        keys = self.keys
        assert keys == sorted(set(keys)), "level keys not strictly sorted"
        assert sorted(self.levels) == keys, "price index and levels disagree"
        assert not self.touched, "touched levels left over from a command"
        count = 0
        for key in keys:
            level = self.levels[key]
            assert level.price == (key if self.is_bid else -key)
            assert level.price > 0
            assert level.head is not None and level.tail is not None, "empty level kept"
            assert level.head.prev is None and level.tail.next is None
            total = 0
            prev: Order | None = None
            order: Order | None = level.head
            while order is not None:
                assert order.prev is prev, "broken back link"
                assert order.level is level
                assert order.symbol == symbol and order.side == side
                assert order.price == level.price
                assert order.status in OPEN_STATUSES
                assert order.order_type == "limit" and order.tif == "GTC"
                leaves = order.qty - order.cum_qty
                assert leaves > 0
                if order.display_qty:
                    # An iceberg shows one slice at a time; the level counts only that.
                    assert 0 < order.shown_qty <= min(order.display_qty, leaves), "iceberg slice"
                    total += order.shown_qty
                else:
                    assert order.shown_qty == 0
                    total += leaves
                count += 1
                prev = order
                order = order.next
            assert prev is level.tail
            assert total == level.total, "level total differs from its orders"
        return count


def _order_id(o: Order) -> int:
    return o.order_id


class Book:
    __slots__ = (
        "asks",
        "bids",
        "book_seq",
        "candles",
        "halted",
        "inst",
        "last_price",
        "stop_buys",
        "stop_sells",
        "symbol",
        "tpl",
        "trade_id",
        "trades",
    )

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.symbol = inst.symbol
        self.bids = Side(True)
        self.asks = Side(False)
        self.halted = False
        self.last_price = 0  # 0 until the first trade
        self.book_seq = 0
        self.trade_id = 0
        self.trades: deque[TradeExecuted] = deque(maxlen=TRADES_KEPT)
        self.candles = SymbolCandles()  # OHLCV per interval, from this book's trades
        self.tpl = SymbolTemplates(inst.symbol, inst.base, inst.quote)
        # (key, order_id, order), ascending: a buy stop's key is its stop price, a sell
        # stop's minus its stop price, so a trade at `px` reaches exactly the buy stops with
        # key <= px and the sell stops with key <= -px, a prefix of each list.
        self.stop_buys: list[tuple[int, int, Order]] = []
        self.stop_sells: list[tuple[int, int, Order]] = []

    def add_stop(self, o: Order) -> None:
        stop = o.stop_price
        assert stop is not None
        if o.side == "buy":
            insort(self.stop_buys, (stop, o.order_id, o))
        else:
            insort(self.stop_sells, (-stop, o.order_id, o))

    def remove_stop(self, o: Order) -> None:
        stop = o.stop_price
        assert stop is not None
        stops, key = (self.stop_buys, stop) if o.side == "buy" else (self.stop_sells, -stop)
        i = bisect_left(stops, (key, o.order_id))
        assert stops[i][2] is o, "stop order not in its list"
        del stops[i]

    def reached_stops(self, px: int) -> list[Order]:
        """Take out and return the stops a trade at `px` reaches, in order-id order."""
        out: list[Order] = []
        for stops, key in ((self.stop_buys, px), (self.stop_sells, -px)):
            if stops and stops[0][0] <= key:
                n = bisect_right(stops, (key, 1 << 62))
                out.extend(t[2] for t in stops[:n])
                del stops[:n]
        out.sort(key=_order_id)
        return out

    def stop_orders(self) -> list[Order]:
        """Every stop order not yet triggered, in order-id order."""
        out = [t[2] for t in self.stop_buys] + [t[2] for t in self.stop_sells]
        out.sort(key=_order_id)
        return out

    def ref_price(self) -> int:
        return self.last_price or self.inst.reference_ticks

    def validate(self) -> int:
        count = self.bids.validate(self.symbol) + self.asks.validate(self.symbol)
        for stops, side, sign in ((self.stop_buys, "buy", 1), (self.stop_sells, "sell", -1)):
            assert stops == sorted(stops, key=lambda t: (t[0], t[1])), "stop list order"
            for key, order_id, o in stops:
                assert o.order_id == order_id and o.stop_price is not None
                assert key == sign * o.stop_price and o.side == side
                assert o.symbol == self.symbol and o.level is None and o.cum_qty == 0
                assert o.order_type in ("stop_market", "stop_limit") and o.status == "new"
        bid = self.bids.best_price()
        ask = self.asks.best_price()
        assert bid is None or ask is None or bid < ask, "book is crossed"
        assert self.book_seq >= 0 and self.trade_id >= 0
        assert len(self.trades) <= TRADES_KEPT
        if self.trades:
            assert self.trades[-1].trade_id == self.trade_id
        return count
