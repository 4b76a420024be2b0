"""The engine beside another pure-Python book on one stream: `python -m bench.engine_compare`.

The seeded mix of `bench.engine_mix` (50% limit orders near the touch, 35% cancels, 10%
amends, 5% marketable) drives the engine, a batch of 1 000 commands at a time as in
`bench.engine`; each batch, translated, then drives akhil4n-orderbook 0.1.1 (a
`sortedcontainers.SortedDict` of price levels, each an `OrderedDict` of orders) in the same
process, so that whatever else runs on the machine weighs on both alike. Every operation is
timed alone with `perf_counter_ns`; the script prints per-kind p50/p99 for both books and
the ratio engine / other book. Install the other book with
`pip install -e '.[bench]'` (or `pip install akhil4n-orderbook==0.1.1`).

What the comparison is, honestly:
- The engine does work the other book does not: every command returns events (an order
  event of 19+ fields per order touched, one BookChanged per command, trades), it holds and
  releases balances, keeps each account's open orders by id and by client order id, checks
  the state table, keeps closed orders answerable (a ring of 16 384), checks price bands,
  self-trade prevention and icebergs. The other book keeps one dict of orders and its levels.
- The other book has no amend: an amend is timed as its cancel plus a new place (it loses
  its place in the queue even where the engine's keeps it).
- An IOC limit is, for the other book, a limit order whose rest is then canceled; a market
  order is its `MarketOrder`. Its `Order` is both the command and the resting order, so its
  construction is timed with the place (the engine builds its order inside `apply()`).
- Prices are the engine's integer ticks for both (the other book's README uses `Decimal`,
  which would make it slower).
- The engine's self-trade prevention cancels where the other book fills, so the two books
  drift apart a little; a cancel or amend naming an order the other book no longer holds is
  left out of its figures (the script prints how many).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from array import array
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from bench import machine
from bench.engine import (
    AMEND,
    BATCH,
    CANCEL,
    KIND_NAMES,
    OTHER,
    PLACE_RESTING,
    PLACE_TAKING,
    command_kind,
    percentile_us,
)
from bench.engine_mix import MixGenerator
from exchange.engine.core import Engine
from exchange.model.commands import AmendOrder, CancelOrder, Command, PlaceOrder
from exchange.model.events import Event, OrderAccepted, OrderAmended
from exchange.model.instruments import load_config

# The kinds compared, in the order shown, by `bench.engine.command_kind`.
SHOWN = ((PLACE_RESTING, "place"), (CANCEL, "cancel"), (AMEND, "amend"),
         (PLACE_TAKING, "marketable"))
KINDS = tuple(name for _, name in SHOWN)
OTHER_BOOK = "akhil4n-orderbook==0.1.1"
INSTALL_HINT = (
    f"bench.engine_compare needs the other book, {OTHER_BOOK}: "
    "pip install -e '.[bench]' (or: pip install 'akhil4n-orderbook==0.1.1')"
)


def load_other() -> ModuleType | None:
    """The other book's module (its import name is `orderbook`), or None when missing."""
    try:
        return importlib.import_module("orderbook")
    except ImportError:
        return None


class OtherBook:
    """akhil4n-orderbook driven by the engine's commands, its ids mapped from the engine's."""

    def __init__(self, mod: ModuleType) -> None:
        self.mod = mod
        self.book = mod.OrderBook()
        self.bid = mod.OrderSide.BID
        self.ask = mod.OrderSide.ASK
        self.ids: dict[int, str] = {}  # engine order id -> the other book's order id
        self.missing = 0  # cancels and amends naming an order the other book no longer has

    def place_untimed(self, cmd: PlaceOrder, events: Sequence[Event]) -> None:
        o = self.mod.Order(self.bid if cmd.side == "buy" else self.ask, cmd.price, cmd.qty)
        self.book.add_limit_order(o)
        self._learn(o, events)

    def _learn(self, o: Any, events: Sequence[Event]) -> None:
        if o.remaining_quantity > 0 and o.order_id in self.book.orders:
            for e in events:
                if type(e) is OrderAccepted:
                    self.ids[e.order_id] = o.order_id
                    break

    def timed(self, cmd: Command, events: Sequence[Event], kind: int) -> int:
        """Apply the translated command; its time in ns, or -1 when it does not apply."""
        clock = time.perf_counter_ns
        mod = self.mod
        book = self.book
        if kind == PLACE_RESTING:
            assert isinstance(cmd, PlaceOrder)
            side = self.bid if cmd.side == "buy" else self.ask
            t0 = clock()
            o = mod.Order(side, cmd.price, cmd.qty)
            book.add_limit_order(o)
            t1 = clock()
            self._learn(o, events)
            return t1 - t0
        if kind == PLACE_TAKING:
            assert isinstance(cmd, PlaceOrder)
            side = self.bid if cmd.side == "buy" else self.ask
            if cmd.order_type == "market":
                t0 = clock()
                book.add_market_order(mod.MarketOrder(side, cmd.qty))
                return clock() - t0
            t0 = clock()
            o = mod.Order(side, cmd.price, cmd.qty)
            book.add_limit_order(o)
            if o.remaining_quantity > 0:
                book.cancel_order(o.order_id)
            return clock() - t0
        if kind == CANCEL:
            assert isinstance(cmd, CancelOrder) and cmd.order_id is not None
            oid = self.ids.pop(cmd.order_id, None)
            if oid is None or oid not in book.orders:
                self.missing += 1
                return -1
            t0 = clock()
            book.cancel_order(oid)
            return clock() - t0
        assert isinstance(cmd, AmendOrder) and cmd.order_id is not None
        oid = self.ids.get(cmd.order_id)
        entry = None if oid is None else book.orders.get(oid)
        amended = next((e for e in events if type(e) is OrderAmended), None)
        if entry is None or amended is None:
            self.missing += 1
            self.ids.pop(cmd.order_id, None)
            return -1
        old = entry[1]
        filled = old.original_quantity - old.remaining_quantity
        qty = amended.qty - filled  # the engine's new open lots, by the other book's fills
        t0 = clock()
        book.cancel_order(oid)
        if qty > 0:
            o = mod.Order(old.side, amended.price, qty)
            book.add_limit_order(o)
        t1 = clock()
        if qty > 0:
            self.ids[cmd.order_id] = o.order_id
        else:
            del self.ids[cmd.order_id]
        return t1 - t0


def run(commands: int, seed: int, book: int, mod: ModuleType) -> int:
    config = load_config()
    engine = Engine(config)
    gen = MixGenerator(config, seed=seed)
    other = OtherBook(mod)
    seq = 0
    for cmd in gen.setup_commands():
        seq += 1
        engine.apply(cmd, seq, seq * 1000)
    while gen.live_orders < book:
        seq += 1
        place = gen.resting_limit()
        events = engine.apply(place, seq, seq * 1000)
        gen.observe(events)
        other.place_untimed(place, events)
    lat_engine = [array("q") for _ in KIND_NAMES]  # by command_kind
    lat_other = [array("q") for _ in KIND_NAMES]
    apply = engine.apply
    clock = time.perf_counter_ns
    done = 0
    while done < commands:
        batch = [gen.next_command() for _ in range(min(BATCH, commands - done))]
        results: list[list[Event]] = []
        spans: list[int] = []
        for cmd in batch:
            seq += 1
            t0 = clock()
            events = apply(cmd, seq, seq * 1000)
            spans.append(clock() - t0)
            results.append(events)
        for cmd, events, ns in zip(batch, results, spans, strict=True):
            gen.observe(events)
            kind = command_kind(cmd)
            if kind == OTHER:
                continue
            lat_engine[kind].append(ns)
            ns_other = other.timed(cmd, events, kind)
            if ns_other >= 0:
                lat_other[kind].append(ns_other)
        done += len(batch)
    engine.validate()
    print(f"machine: {machine.cpu_model()}, python {platform.python_version()}")
    print(f"commands: {commands}  seed: {seed}  book: {book} resting orders at start")
    print(f"other book: {OTHER_BOOK} (no amend: timed as its cancel + a new place)")
    print(f"left out of the other book's figures (order no longer there): {other.missing}")
    print(f"{'kind':<11} {'engine p50':>10} {'p99':>7} {'other p50':>10} {'p99':>7} "
          f"{'ratio p50':>9} {'p99':>6}  (µs; ratio = engine / other)")
    ratios: list[str] = []
    for k, name in SHOWN:
        e = sorted(lat_engine[k])
        o = sorted(lat_other[k])
        if not e or not o:
            continue
        e50, e99 = percentile_us(e, 50), percentile_us(e, 99)
        o50, o99 = percentile_us(o, 50), percentile_us(o, 99)
        print(f"{name:<11} {e50:>10.2f} {e99:>7.2f} {o50:>10.2f} {o99:>7.2f} "
              f"{e50 / o50:>9.2f} {e99 / o99:>6.2f}")
        ratios.append(f"{name}_p50_ratio={e50 / o50:.2f}")
    print("RESULT engine_compare " + " ".join(ratios))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_compare", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--book", type=int, default=10_000, help="resting orders at start")
    args = parser.parse_args(argv)
    mod = load_other()
    if mod is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    return run(args.commands, args.seed, args.book, mod)


if __name__ == "__main__":
    sys.exit(main())
