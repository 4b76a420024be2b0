"""Fixed workloads for instruction counts: `python -m bench.engine_instr KIND [--n N] --callgrind`.

On a shared machine wall-clock figures move more than most changes; instruction counts under
`valgrind --tool=callgrind` do not. With `--callgrind` this module runs itself twice under
callgrind, without and with `--apply`, and prints (difference) / N: the instructions of one
operation, the set-up (and the making of the N commands) subtracted. Both runs end with
`os._exit`, so interpreter teardown is counted in neither.

KIND is one of
- `cancel`, `amend-kept` (a smaller qty: keeps its place), `amend-moved` (a new price on its
  own side): N engine commands on an engine holding 2 000 + N resting orders from
  `bench.engine_mix` (seed 1) in 16 accounts; cancels and moves name a seeded sample;
- level primitives, on 2 000 + N orders spread over 80 levels, without the rest of the
  engine: `unlink-struct` (the linked-list unlink of the engine's cancel on its msgspec
  `Order`/`Level`), `unlink-slots` (the same code on `__slots__` classes: what the Struct
  stores cost), `unlink-odict` (levels as `OrderedDict` order_id -> Order: one delete),
  `move-struct` / `move-odict` (an amend's unlink then append at another level),
  `head-struct` / `head-odict` (a filled maker taken off its level's head).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence

import msgspec

from bench.engine_mix import MixGenerator
from exchange.engine.core import Engine
from exchange.engine.orders import Level, Order
from exchange.model.commands import AmendOrder, CancelOrder, Command
from exchange.model.events import OrderAccepted, OrderAmended, OrderCanceled
from exchange.model.instruments import load_config

ENGINE_KINDS = ("cancel", "amend-kept", "amend-moved")
PRIMITIVE_KINDS = (
    "unlink-struct", "unlink-slots", "unlink-odict", "move-struct", "move-odict",
    "head-struct", "head-odict",
)
BASE_ORDERS = 2000
LEVELS = 80
LOTS = 5


# ---------------------------------------------------------------- engine commands
def engine_workload(kind: str, n: int) -> Callable[[], None]:
    """Set up the engine and N commands of `kind`; returns what applies them."""
    config = load_config()
    engine = Engine(config)
    gen = MixGenerator(config, seed=1)
    seq = 0
    for cmd in gen.setup_commands():
        seq += 1
        engine.apply(cmd, seq, seq * 1000)
    live: list[tuple[int, int, bool, int]] = []  # order id, account, is buy, qty
    while len(live) < BASE_ORDERS + n:
        seq += 1
        for e in engine.apply(gen.resting_limit(), seq, seq * 1000):
            if type(e) is OrderAccepted:
                live.append((e.order_id, e.account_id, e.side == "buy", e.qty))
    sym = gen.symbol
    cmds: list[Command] = []
    if kind == "cancel":
        for oid, acct, _, _ in random.Random(7).sample(live, n):
            cmds.append(CancelOrder(account_id=acct, symbol=sym, order_id=oid))
        answer: type = OrderCanceled
    elif kind == "amend-kept":
        for oid, acct, _, qty in [t for t in live if t[3] > 1][:n]:
            cmds.append(AmendOrder(account_id=acct, symbol=sym, order_id=oid, new_qty=qty - 1))
        answer = OrderAmended
    else:
        for oid, acct, is_buy, _ in random.Random(7).sample(live, n):
            off = gen._offset()
            price = gen.mid - off if is_buy else gen.mid + off
            cmds.append(AmendOrder(account_id=acct, symbol=sym, order_id=oid, new_price=price))
        answer = OrderAmended

    def apply() -> None:
        seq = engine.last_seq
        for c in cmds:
            seq += 1
            events = engine.apply(c, seq, seq * 1000)
            if type(events[0]) is not answer:
                raise AssertionError(f"{c!r} answered {events[0]!r}")

    return apply


# ---------------------------------------------------------------- level primitives
class OdictLevel(Level, gc=False):
    """A level as an `OrderedDict` (order id -> order) instead of a linked list (a `Level`
    only so that `Order.level` may point to it; head and tail stay unused)."""

    orders: OrderedDict[int, Order] = msgspec.field(default_factory=OrderedDict)


class SlotLevel:
    __slots__ = ("head", "price", "tail", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.total = 0
        self.head: SlotOrder | None = None
        self.tail: SlotOrder | None = None


class SlotOrder:
    __slots__ = ("level", "next", "order_id", "prev", "price")

    def __init__(self, order_id: int, price: int) -> None:
        self.order_id = order_id
        self.price = price
        self.prev: SlotOrder | None = None
        self.next: SlotOrder | None = None
        self.level: SlotLevel | None = None


def _order(order_id: int, price: int) -> Order:
    return Order(
        order_id=order_id, account_id=1, symbol="BTC-USD", side="buy", order_type="limit",
        tif="GTC", post_only=False, price=price, qty=LOTS, cum_qty=0, cum_notional=0,
        status="new", client_order_id=f"c{order_id}", session_id="", created_seq=order_id,
        created_ts=0, updated_ts=0,
    )


def _unlink(o: Order) -> None:
    # As the engine's cancel: links already None are not written again.
    level = o.level
    assert level is not None
    level.total = level.total - LOTS
    prev = o.prev
    nxt = o.next
    o.level = None
    if prev is None:
        level.head = nxt
    else:
        prev.next = nxt
        o.prev = None
    if nxt is None:
        level.tail = prev
    else:
        nxt.prev = prev
        o.next = None


def _unlink_slots(o: SlotOrder) -> None:
    # The same code, on __slots__ classes.
    level = o.level
    assert level is not None
    level.total = level.total - LOTS
    prev = o.prev
    nxt = o.next
    o.level = None
    if prev is None:
        level.head = nxt
    else:
        prev.next = nxt
        o.prev = None
    if nxt is None:
        level.tail = prev
    else:
        nxt.prev = prev
        o.next = None


def _move(o: Order, levels: list[Level]) -> None:
    # As the engine's amend to a new price: unlink, then `Side.rest` at the new level's back.
    level = o.level
    assert level is not None
    level.total = level.total - LOTS
    prev = o.prev
    nxt = o.next
    if prev is None:
        level.head = nxt
    else:
        prev.next = nxt
    if nxt is None:
        level.tail = prev
    else:
        nxt.prev = prev
        o.next = None
    new = levels[(level.price + 7) % LEVELS]
    new.total = new.total + LOTS
    tail = new.tail
    o.level = new
    o.price = new.price
    o.prev = tail
    if tail is None:
        new.head = o
    else:
        tail.next = o
    new.tail = o


def _head(level: Level) -> Order:
    # As the taker's removal of a filled maker at its level's head.
    m = level.head
    assert m is not None
    nxt = m.next
    level.head = nxt
    if nxt is None:
        level.tail = None
    else:
        nxt.prev = None
        m.next = None
    m.level = None
    return m


# As the three above, with levels as `OrderedDict`s; the level is the order's `level`, as it
# would be in the engine (the ignores: it is typed as a `Level`).
def _unlink_odict(o: Order) -> None:
    level = o.level
    assert level is not None
    level.total = level.total - LOTS
    o.level = None
    del level.orders[o.order_id]  # type: ignore[attr-defined]


def _move_odict(o: Order, levels: list[OdictLevel]) -> None:
    level = o.level
    assert level is not None
    level.total = level.total - LOTS
    del level.orders[o.order_id]  # type: ignore[attr-defined]
    new = levels[(level.price + 7) % LEVELS]
    new.total = new.total + LOTS
    o.level = new
    o.price = new.price
    new.orders[o.order_id] = o


def _head_odict(level: OdictLevel) -> Order:
    q = level.orders
    m = next(iter(q.values()))
    del q[m.order_id]
    m.level = None
    return m


def primitive_workload(kind: str, n: int) -> Callable[[], None]:
    count = BASE_ORDERS + n
    rng = random.Random(3)
    if kind == "unlink-slots":
        slot_levels = [SlotLevel(p + 1) for p in range(LEVELS)]
        slot_orders: list[SlotOrder] = []
        for i in range(count):
            sl = slot_levels[i % LEVELS]
            so = SlotOrder(i + 1, sl.price)
            so.level = sl
            so.prev = sl.tail
            if sl.tail is None:
                sl.head = so
            else:
                sl.tail.next = so
            sl.tail = so
            sl.total += LOTS
            slot_orders.append(so)
        slot_pick = rng.sample(slot_orders, n)

        def run_slots() -> None:
            for so in slot_pick:
                _unlink_slots(so)

        return run_slots
    orders = [_order(i + 1, i % LEVELS + 1) for i in range(count)]
    if kind.endswith("-odict"):
        od_levels = [OdictLevel(p + 1) for p in range(LEVELS)]
        for o in orders:
            ol = od_levels[(o.order_id - 1) % LEVELS]
            ol.orders[o.order_id] = o
            ol.total += LOTS
            o.level = ol
        pick = rng.sample(orders, n)

        def run_odict() -> None:
            if kind == "unlink-odict":
                for o in pick:
                    _unlink_odict(o)
            elif kind == "move-odict":
                for o in pick:
                    _move_odict(o, od_levels)
            else:
                for i in range(n):
                    _head_odict(od_levels[i % LEVELS])

        return run_odict
    levels = [Level(p + 1) for p in range(LEVELS)]
    for o in orders:
        lv = levels[(o.order_id - 1) % LEVELS]
        o.level = lv
        o.prev = lv.tail
        if lv.tail is None:
            lv.head = o
        else:
            lv.tail.next = o
        lv.tail = o
        lv.total += LOTS
    pick = rng.sample(orders, n)

    def run_struct() -> None:
        if kind == "unlink-struct":
            for o in pick:
                _unlink(o)
        elif kind == "move-struct":
            for o in pick:
                _move(o, levels)
        else:
            for i in range(n):
                _head(levels[i % LEVELS])

    return run_struct


def workload(kind: str, n: int) -> Callable[[], None]:
    if kind in ENGINE_KINDS:
        return engine_workload(kind, n)
    if kind in PRIMITIVE_KINDS:
        return primitive_workload(kind, n)
    raise ValueError(f"unknown kind {kind!r}")


# ---------------------------------------------------------------- callgrind driver
_COLLECTED = re.compile(r"Collected : (\d+)")


def callgrind_per_op(kind: str, n: int) -> float:
    """Instructions per operation: two callgrind runs, without and with --apply."""
    totals: list[int] = []
    for extra in ([], ["--apply"]):
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             "-m", "bench.engine_instr", kind, "--n", str(n), *extra],
            capture_output=True, text=True, check=True,
        )
        m = _COLLECTED.search(proc.stderr)
        if m is None:
            raise RuntimeError(f"no instruction count in callgrind's output:\n{proc.stderr}")
        totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_instr", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kinds", nargs="+", choices=ENGINE_KINDS + PRIMITIVE_KINDS)
    parser.add_argument("--n", type=int, default=3000, help="operations applied")
    parser.add_argument("--apply", action="store_true", help="apply them (else set up only)")
    parser.add_argument(
        "--callgrind", action="store_true",
        help="run each kind twice under callgrind and print instructions per operation",
    )
    args = parser.parse_args(argv)
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("--callgrind needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
            return 2
        for kind in args.kinds:
            print(f"{kind:<14} {callgrind_per_op(kind, args.n):>9.0f} instructions per op",
                  flush=True)
        return 0
    if len(args.kinds) != 1:
        parser.error("one kind at a time without --callgrind")
    run = workload(args.kinds[0], args.n)
    if args.apply:
        run()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # No teardown: freeing the engine would be counted in one run and not the other.
    os._exit(code)
