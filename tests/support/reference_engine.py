"""A naive reference engine, written for obviousness rather than speed.

Open orders sit in one plain list; the makers a taker meets are found by sorting that list
by price then by the moment each order (re)entered the book. Market-data deltas are the
difference of the aggregated book before and after each command. FOK and market-order
checks run the real matching on a deep copy and look at what happened. Events are built with
their constructors. Semantics: docs/ENGINE.md; the tests compare every event and the whole
book of `exchange.engine.core.Engine` against this after every command.

It stays one module past 500 lines on purpose: a reader checks the real engine's semantics
against it top to bottom, and splitting it like the engine's mixins would make it mirror the
code under test instead of standing apart from it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass

from exchange.model.commands import (
    AmendOrder,
    Batch,
    CancelAll,
    CancelOrder,
    Command,
    CreateAccount,
    CreateApiKey,
    Deposit,
    HaltSymbol,
    ListAsset,
    ListInstrument,
    PlaceOrder,
    ResumeSymbol,
    RevokeApiKey,
    UpdateInstrument,
    Withdraw,
)
from exchange.model.events import (
    AccountCreated,
    AllCanceled,
    ApiKeyCreated,
    ApiKeyRevoked,
    AssetListed,
    BookChanged,
    CancelRejected,
    CommandRejected,
    Deposited,
    Event,
    InstrumentListed,
    InstrumentUpdated,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    SymbolHalted,
    SymbolResumed,
    TradeExecuted,
    Withdrawn,
)
from exchange.model.instruments import (
    CONFIG_FIELDS,
    ConfigError,
    ExchangeConfig,
    Instrument,
    check_asset,
    derive_instrument,
)


@dataclass(eq=False)
class ROrder:
    order_id: int
    account_id: int
    symbol: str
    side: str
    order_type: str
    tif: str
    post_only: bool
    price: int | None
    qty: int
    cum_qty: int
    cum_notional: int
    status: str
    client_order_id: str
    session_id: str
    stp: str
    prio: int = 0
    stop_price: int | None = None
    display: int = 0  # iceberg: lots shown at a time
    shown: int = 0  # iceberg: lots of the current slice still open

    @property
    def leaves(self) -> int:
        return self.qty - self.cum_qty

    @property
    def pending(self) -> bool:
        """A stop order not yet triggered: open, but not in the book."""
        return self.order_type in ("stop_market", "stop_limit")

    @property
    def visible(self) -> int:
        return self.shown if self.display else self.leaves


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ReferenceEngine:
    def __init__(self, config: ExchangeConfig) -> None:
        self.config = config.copy()  # the live set: listing commands change this copy
        self.assets = list(config.assets)
        self.accounts: dict[int, str] = {0: "fees"}
        self.bal: dict[tuple[int, str], list[int]] = {(0, a): [0, 0] for a in self.assets}
        self.keys: dict[str, int] = {}
        self.open: list[ROrder] = []
        self.halted: dict[str, bool] = dict.fromkeys(config.instruments, False)
        self.last_price: dict[str, int] = dict.fromkeys(config.instruments, 0)
        self.book_seq: dict[str, int] = dict.fromkeys(config.instruments, 0)
        self.trade_id: dict[str, int] = dict.fromkeys(config.instruments, 0)
        self.net: dict[str, int] = dict.fromkeys(self.assets, 0)
        self.next_account = 1
        self.next_order = 1
        self.exec_id = 0
        self.prio = 0
        self.seq = 0
        self.ts = 0
        self.events: list[Event] = []

    # ------------------------------------------------------------------ helpers
    def book(self, symbol: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for o in self.open:
            if o.symbol == symbol and not o.pending:
                side = bids if o.side == "buy" else asks
                assert o.price is not None
                side[o.price] = side.get(o.price, 0) + o.visible
        return (
            sorted(bids.items(), reverse=True),
            sorted(asks.items()),
        )

    def balances(self, account_id: int) -> list[tuple[str, int, int]]:
        rows = [(a, self.bal[(account_id, a)]) for a in self.assets]
        return [(a, b[0], b[1]) for a, b in rows]

    def _next_exec(self) -> int:
        self.exec_id += 1
        return self.exec_id

    def _oe(self, o: ROrder, leaves: int | None = None) -> dict[str, object]:
        return {
            "seq": self.seq, "ts": self.ts, "exec_id": self._next_exec(),
            "account_id": o.account_id, "order_id": o.order_id,
            "client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side,
            "order_type": o.order_type, "tif": o.tif, "price": o.price, "qty": o.qty,
            "cum_qty": o.cum_qty, "leaves_qty": o.leaves if leaves is None else leaves,
            "cum_notional": o.cum_notional, "status": o.status, "session_id": o.session_id,
        }

    def _hold_of(self, o: ROrder) -> tuple[str, int]:
        inst = self.config.instruments[o.symbol]
        price = o.price
        if price is None:  # a stop_market buy holds at the top of the band around its stop
            assert o.order_type == "stop_market" and o.stop_price is not None
            price = o.stop_price * (100 + inst.price_band_pct) // 100
        if o.side == "buy":
            return inst.quote, price * o.leaves * inst.quote_units_per_tick_lot
        return inst.base, o.leaves * inst.base_units_per_lot

    def _hold(self, o: ROrder, sign: int) -> None:
        asset, amount = self._hold_of(o)
        b = self.bal[(o.account_id, asset)]
        b[0] -= sign * amount
        b[1] += sign * amount

    def _cancel(self, o: ROrder, reason: str) -> None:
        self._hold(o, -1)
        self.open.remove(o)
        o.status = "canceled"
        self.events.append(OrderCanceled(**self._oe(o, 0), reason=reason))  # type: ignore[arg-type]

    def _find(
        self, account_id: int, symbol: str, oid: int | None, coid: str | None
    ) -> ROrder | None:
        for o in self.open:
            if o.account_id != account_id:
                continue
            if oid is not None and o.order_id != oid:
                continue
            if oid is None and o.client_order_id != coid:
                continue
            if coid is not None and o.client_order_id != coid:
                return None
            return o if o.symbol == symbol else None
        return None

    def _in_band(self, inst: Instrument, price: int) -> bool:
        ref = self.last_price[inst.symbol] or inst.reference_ticks
        return abs(price - ref) * 100 <= ref * inst.price_band_pct

    def _best_opposite(self, symbol: str, is_buy: bool) -> int | None:
        prices = [
            o.price for o in self.open
            if o.symbol == symbol and (o.side == "sell") == is_buy and o.price is not None
            and not o.pending
        ]
        if not prices:
            return None
        return min(prices) if is_buy else max(prices)

    def _crosses(self, symbol: str, is_buy: bool, price: int) -> bool:
        best = self._best_opposite(symbol, is_buy)
        return best is not None and (price >= best if is_buy else price <= best)

    def _finish(self, symbol: str, before: tuple[list[tuple[int, int]], ...]) -> None:
        after = self.book(symbol)
        changes = []
        for old, new in zip(before, after, strict=True):
            o, n = dict(old), dict(new)
            diff = [(p, n.get(p, 0)) for p in set(o) | set(n) if o.get(p, 0) != n.get(p, 0)]
            changes.append(diff)
        bids = sorted(changes[0], reverse=True)
        asks = sorted(changes[1])
        if bids or asks:
            self.book_seq[symbol] += 1
            self.events.append(
                BookChanged(
                    seq=self.seq, ts=self.ts, symbol=symbol, book_seq=self.book_seq[symbol],
                    bids=bids, asks=asks,
                )
            )

    # ------------------------------------------------------------------ matching
    def _match(self, t: ROrder, limit: int) -> str:
        """Match taker `t`; returns why it stopped: done, limit, stp, budget, empty."""
        inst = self.config.instruments[t.symbol]
        is_buy = t.side == "buy"
        qtl = inst.quote_units_per_tick_lot
        bul = inst.base_units_per_lot
        while t.leaves > 0:
            makers = [
                o for o in self.open
                if o.symbol == t.symbol and o.side != t.side and not o.pending
            ]
            if not makers:
                return "empty"
            makers.sort(key=lambda o: ((o.price if is_buy else -o.price), o.prio))  # type: ignore[operator]
            m = makers[0]
            px = m.price
            assert px is not None
            if (px > limit) if is_buy else (px < limit):
                return "limit"
            if m.account_id == t.account_id:
                if t.stp in ("cancel_oldest", "cancel_both"):
                    self._cancel(m, "stp")
                if t.stp != "cancel_oldest":
                    return "stp"
                continue
            q = min(m.visible, t.leaves)
            short_of_quote = False
            if is_buy and t.order_type == "market":
                afford = self.bal[(t.account_id, inst.quote)][0] // (px * qtl)
                if afford == 0:
                    return "budget"
                if afford < q:
                    q = afford
                    short_of_quote = True
            notional = px * q * qtl
            base_units = q * bul
            buyer, seller = (t, m) if is_buy else (m, t)
            buyer_bps = inst.taker_fee_bps if is_buy else inst.maker_fee_bps
            seller_bps = inst.maker_fee_bps if is_buy else inst.taker_fee_bps
            buyer_fee = ceil_div(base_units * buyer_bps, 10000)
            seller_fee = ceil_div(notional * seller_bps, 10000)
            # Buyer: pays quote (from held if resting, from available if taking).
            bq = self.bal[(buyer.account_id, inst.quote)]
            if buyer is m:
                bq[1] -= notional
            else:
                bq[0] -= notional
            self.bal[(buyer.account_id, inst.base)][0] += base_units - buyer_fee
            sb = self.bal[(seller.account_id, inst.base)]
            if seller is m:
                sb[1] -= base_units
            else:
                sb[0] -= base_units
            self.bal[(seller.account_id, inst.quote)][0] += notional - seller_fee
            self.bal[(0, inst.base)][0] += buyer_fee
            self.bal[(0, inst.quote)][0] += seller_fee
            self.trade_id[t.symbol] += 1
            tid = self.trade_id[t.symbol]
            self.last_price[t.symbol] = px
            self.events.append(
                TradeExecuted(
                    seq=self.seq, ts=self.ts, symbol=t.symbol, trade_id=tid, price=px, qty=q,
                    taker_side=t.side, maker_order_id=m.order_id,  # type: ignore[arg-type]
                    taker_order_id=t.order_id,
                )
            )
            for o, fee, liq in ((m, buyer_fee if buyer is m else seller_fee, "maker"),
                                (t, buyer_fee if buyer is t else seller_fee, "taker")):
                o.cum_qty += q
                o.cum_notional += px * q
                o.status = "filled" if o.leaves == 0 else "partially_filled"
                if o is m and o.leaves == 0:
                    self.open.remove(o)
                elif o is m and o.display:
                    o.shown -= q
                    if o.shown == 0:  # the slice refills at the back of the level
                        o.shown = min(o.display, o.leaves)
                        self.prio += 1
                        o.prio = self.prio
                fee_asset = inst.base if o is buyer else inst.quote
                self.events.append(
                    OrderFilled(
                        **self._oe(o), trade_id=tid, last_px=px, last_qty=q,  # type: ignore[arg-type]
                        liquidity=liq, fee=fee, fee_asset=fee_asset,  # type: ignore[arg-type]
                    )
                )
            if short_of_quote:
                return "budget"
        return "done"

    def _dry_fill(self, t: ROrder, limit: int) -> tuple[int, str]:
        twin = copy.deepcopy(self)
        tt = copy.deepcopy(t)
        twin.events = []
        why = twin._match(tt, limit)
        return tt.cum_qty, why

    # ------------------------------------------------------------------ commands
    def apply(self, c: Command, seq: int, ts: int) -> list[Event]:
        self.seq, self.ts = seq, ts
        self.events = []
        if isinstance(c, PlaceOrder):
            self._place(c)
        elif isinstance(c, Batch):
            if not 1 <= len(c.commands) <= 20:
                self.events.append(
                    CommandRejected(seq=seq, ts=ts, code=1002, reason="invalid field value")
                )
            for item in c.commands if len(c.commands) <= 20 else ():
                if isinstance(item, PlaceOrder):
                    self._place(item)
                else:
                    self._cancel_cmd(item)
        elif isinstance(c, CancelOrder):
            self._cancel_cmd(c)
        elif isinstance(c, AmendOrder):
            self._amend(c)
        elif isinstance(c, CancelAll):
            self._cancel_all(c)
        else:
            self._operator(c)
        return self.events

    def _reject(self, c: PlaceOrder, code: int, band_reference: int = 0) -> None:
        self.events.append(
            OrderRejected(
                seq=self.seq, ts=self.ts, exec_id=self._next_exec(), account_id=c.account_id,
                order_id=0, client_order_id=c.client_order_id, symbol=c.symbol, side=c.side,
                order_type=c.order_type, tif=c.tif, price=c.price, qty=c.qty, cum_qty=0,
                leaves_qty=0, cum_notional=0, status="rejected", session_id=c.session_id,
                code=code, band_reference=band_reference,
            )
        )

    def _place(self, c: PlaceOrder) -> None:
        inst = self.config.instruments.get(c.symbol)
        if inst is None:
            return self._reject(c, 1003)
        if self.halted[c.symbol]:
            return self._reject(c, 3007)
        if c.order_type in ("stop_market", "stop_limit"):
            return self._place_stop(c, inst)
        limit_type = c.order_type == "limit"
        bad = (
            c.stop_price is not None
            or (c.display_qty != 0 and not (
                limit_type and c.tif == "GTC" and inst.min_lots <= c.display_qty < c.qty
            ))
            or
            not inst.min_lots <= c.qty <= inst.max_lots
            or (limit_type and c.price is None)
            or (not limit_type and c.price is not None)
            or (c.price is not None and c.price <= 0)
            or not 1 <= len(c.client_order_id) <= 36
            or (c.post_only and (not limit_type or c.tif != "GTC"))
        )
        if bad:
            return self._reject(c, 1002)
        if c.account_id == 0 or c.account_id not in self.accounts:
            return self._reject(c, 3008)
        if any(
            o.account_id == c.account_id and o.client_order_id == c.client_order_id
            for o in self.open
        ):
            return self._reject(c, 3004)
        is_buy = c.side == "buy"
        ref = self.last_price[c.symbol] or inst.reference_ticks
        if c.price is not None:
            if not self._in_band(inst, c.price):
                return self._reject(c, 3002, ref)
            if c.post_only and self._crosses(c.symbol, is_buy, c.price):
                return self._reject(c, 3003)
            limit = c.price
        else:
            # The band is fixed at arrival: |price - ref| * 100 <= ref * pct.
            reach = ref * inst.price_band_pct // 100
            limit = ref + reach if is_buy else ref - reach
        if is_buy:
            if c.price is not None and (
                self.bal[(c.account_id, inst.quote)][0]
                < c.price * c.qty * inst.quote_units_per_tick_lot
            ):
                return self._reject(c, 3001)
        elif self.bal[(c.account_id, inst.base)][0] < c.qty * inst.base_units_per_lot:
            return self._reject(c, 3001)
        t = ROrder(
            self.next_order, c.account_id, c.symbol, c.side, c.order_type, c.tif, c.post_only,
            c.price, c.qty, 0, 0, "new", c.client_order_id, c.session_id, c.stp,
        )
        if c.price is None or c.tif == "FOK":
            filled, why = self._dry_fill(t, limit)
            if c.price is None and filled == 0:
                return self._reject(c, 3001 if why == "budget" else 3006)
            if c.tif == "FOK" and filled < c.qty:
                return self._reject(c, 3006)
        self.next_order += 1
        t.display = c.display_qty
        before = self.book(c.symbol)
        start = len(self.events)
        self.events.append(
            OrderAccepted(**self._oe(t), post_only=c.post_only, display_qty=c.display_qty)  # type: ignore[arg-type]
        )
        why = self._match(t, limit)
        self._after_take(t, why)
        self._run_stops(start)
        self._finish(c.symbol, before)

    def _after_take(self, t: ROrder, why: str) -> None:
        if t.leaves == 0:
            return
        if why == "stp":
            t.status = "canceled"
            self.events.append(OrderCanceled(**self._oe(t, 0), reason="stp"))  # type: ignore[arg-type]
        elif t.order_type == "market" or t.tif != "GTC":
            self._expire(t)
        else:
            self.prio += 1
            t.prio = self.prio
            if t.display:
                t.shown = min(t.display, t.leaves)
            self.open.append(t)
            self._hold(t, +1)

    def _expire(self, t: ROrder) -> None:
        t.status = "expired"
        self.events.append(OrderExpired(**self._oe(t, 0)))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ stop orders
    def _stop_reached(self, symbol: str, side: str, stop: int) -> bool:
        inst = self.config.instruments[symbol]
        ref = self.last_price[symbol] or inst.reference_ticks
        return ref >= stop if side == "buy" else ref <= stop

    def _place_stop(self, c: PlaceOrder, inst: Instrument) -> None:
        with_price = c.order_type == "stop_limit"
        if (
            not inst.min_lots <= c.qty <= inst.max_lots
            or c.stop_price is None
            or c.stop_price <= 0
            or (c.price is not None) != with_price
            or (c.price is not None and c.price <= 0)
            or not 1 <= len(c.client_order_id) <= 36
            or c.post_only
            or c.display_qty != 0
        ):
            return self._reject(c, 1002)
        if c.account_id == 0 or c.account_id not in self.accounts:
            return self._reject(c, 3008)
        if any(
            o.account_id == c.account_id and o.client_order_id == c.client_order_id
            for o in self.open
        ):
            return self._reject(c, 3004)
        if self._stop_reached(c.symbol, c.side, c.stop_price):
            return self._reject(c, 1002)
        t = ROrder(
            self.next_order, c.account_id, c.symbol, c.side, c.order_type, c.tif, False,
            c.price, c.qty, 0, 0, "new", c.client_order_id, c.session_id, c.stp,
            stop_price=c.stop_price,
        )
        asset, amount = self._hold_of(t)
        if self.bal[(c.account_id, asset)][0] < amount:
            return self._reject(c, 3001)
        self.next_order += 1
        self.open.append(t)
        self._hold(t, +1)
        self.events.append(
            OrderAccepted(**self._oe(t), post_only=False, stop_price=c.stop_price)  # type: ignore[arg-type]
        )

    def _run_stops(self, start: int) -> None:
        """Each trade from `start` on, in event order (those of triggered stops too): the
        stops it reaches trigger, in order-id order."""
        i = start
        while i < len(self.events):
            e = self.events[i]
            i += 1
            if not isinstance(e, TradeExecuted):
                continue
            reached = sorted(
                (
                    o for o in self.open
                    if o.pending and o.symbol == e.symbol and o.stop_price is not None
                    and (o.stop_price <= e.price if o.side == "buy" else o.stop_price >= e.price)
                ),
                key=lambda o: o.order_id,
            )
            for o in reached:
                self._trigger(o)

    def _trigger(self, o: ROrder) -> None:
        inst = self.config.instruments[o.symbol]
        self._hold(o, -1)
        self.open.remove(o)
        o.order_type = "market" if o.price is None else "limit"
        self.events.append(OrderTriggered(**self._oe(o), stop_price=o.stop_price))  # type: ignore[arg-type]
        is_buy = o.side == "buy"
        ref = self.last_price[o.symbol] or inst.reference_ticks
        if o.price is not None:
            limit = o.price
            out = not self._in_band(inst, o.price) or (
                self.bal[(o.account_id, inst.quote)][0]
                < o.price * o.qty * inst.quote_units_per_tick_lot
                if is_buy
                else self.bal[(o.account_id, inst.base)][0] < o.qty * inst.base_units_per_lot
            )
        else:
            reach = ref * inst.price_band_pct // 100
            limit = ref + reach if is_buy else ref - reach
            out = not is_buy and (
                self.bal[(o.account_id, inst.base)][0] < o.qty * inst.base_units_per_lot
            )
        if not out and o.tif == "FOK":
            filled, _ = self._dry_fill(o, limit)
            out = filled < o.qty
        if out:
            return self._expire(o)
        # The open list keeps id order for cancel-all; where it sits does not matter else.
        why = self._match(o, limit)
        self._after_take(o, why)

    def _cancel_rejected(self, c: CancelOrder | AmendOrder, code: int,
                         band_reference: int = 0) -> None:
        self.events.append(
            CancelRejected(
                seq=self.seq, ts=self.ts, account_id=c.account_id, symbol=c.symbol,
                order_id=c.order_id, client_order_id=c.client_order_id, code=code,
                amend=isinstance(c, AmendOrder), band_reference=band_reference,
            )
        )

    def _cancel_cmd(self, c: CancelOrder) -> None:
        if c.symbol not in self.config.instruments:
            return self._cancel_rejected(c, 1003)
        if c.order_id is None and c.client_order_id is None:
            return self._cancel_rejected(c, 1002)
        o = self._find(c.account_id, c.symbol, c.order_id, c.client_order_id)
        if o is None:
            return self._cancel_rejected(c, 3005)
        before = self.book(c.symbol)
        self._cancel(o, "user")
        self._finish(c.symbol, before)

    def _amend(self, c: AmendOrder) -> None:
        inst = self.config.instruments.get(c.symbol)
        if inst is None:
            return self._cancel_rejected(c, 1003)
        if self.halted[c.symbol]:
            return self._cancel_rejected(c, 3007)
        if (
            (c.order_id is None and c.client_order_id is None)
            or (c.new_qty is None and c.new_price is None and c.new_stop_price is None)
            or (c.new_qty is not None and not 0 <= c.new_qty <= inst.max_lots)
            or (c.new_price is not None and c.new_price <= 0)
        ):
            return self._cancel_rejected(c, 1002)
        o = self._find(c.account_id, c.symbol, c.order_id, c.client_order_id)
        if o is None:
            return self._cancel_rejected(c, 3005)
        if o.pending:
            return self._amend_stop(c, o, inst)
        if c.new_stop_price is not None:
            return self._cancel_rejected(c, 1002)
        qty = o.qty if c.new_qty is None else c.new_qty
        price = o.price if c.new_price is None else c.new_price
        assert price is not None and o.price is not None
        before = self.book(c.symbol)
        if qty <= o.cum_qty:
            self._cancel(o, "amend")
            return self._finish(c.symbol, before)
        if qty < inst.min_lots:
            return self._cancel_rejected(c, 1002)
        is_buy = o.side == "buy"
        crosses = False
        if price != o.price:
            if not self._in_band(inst, price):
                ref = self.last_price[c.symbol] or inst.reference_ticks
                return self._cancel_rejected(c, 3002, ref)
            crosses = self._crosses(c.symbol, is_buy, price)
            if crosses and o.post_only:
                return self._cancel_rejected(c, 3003)
        new = copy.copy(o)
        new.qty, new.price = qty, price
        old_asset, old_hold = self._hold_of(o)
        _, new_hold = self._hold_of(new)
        if new_hold - old_hold > self.bal[(o.account_id, old_asset)][0]:
            return self._cancel_rejected(c, 3001)
        kept = price == o.price and qty <= o.qty
        self._hold(o, -1)
        o.qty, o.price = qty, price
        self.events.append(
            OrderAmended(**self._oe(o), kept_priority=kept, stop_price=o.stop_price)  # type: ignore[arg-type]
        )
        start = len(self.events)
        if kept:
            self._hold(o, +1)
            if o.display:
                o.shown = min(o.shown, o.leaves)
        else:
            self.open.remove(o)
            why = self._match(o, price) if crosses else "limit"
            self._after_take(o, why)
        self._run_stops(start)
        self._finish(c.symbol, before)

    def _amend_stop(self, c: AmendOrder, o: ROrder, inst: Instrument) -> None:
        qty = o.qty if c.new_qty is None else c.new_qty
        if qty == 0:
            return self._cancel(o, "amend")
        stop = o.stop_price if c.new_stop_price is None else c.new_stop_price
        assert stop is not None
        if (
            qty < inst.min_lots
            or (c.new_price is not None and o.order_type != "stop_limit")
            or stop <= 0
            or self._stop_reached(o.symbol, o.side, stop)
        ):
            return self._cancel_rejected(c, 1002)
        new = copy.copy(o)
        new.qty, new.stop_price = qty, stop
        if c.new_price is not None:
            new.price = c.new_price
        asset, old_hold = self._hold_of(o)
        _, new_hold = self._hold_of(new)
        if new_hold - old_hold > self.bal[(o.account_id, asset)][0]:
            return self._cancel_rejected(c, 3001)
        self._hold(o, -1)
        o.qty, o.price, o.stop_price = new.qty, new.price, new.stop_price
        self._hold(o, +1)
        self.events.append(
            OrderAmended(**self._oe(o), kept_priority=True, stop_price=stop)  # type: ignore[arg-type]
        )

    def _cancel_all(self, c: CancelAll) -> None:
        if c.symbol is not None and c.symbol not in self.config.instruments:
            self.events.append(
                CommandRejected(seq=self.seq, ts=self.ts, code=1003, reason="unknown symbol")
            )
            return
        if c.account_id not in self.accounts:
            self.events.append(
                CommandRejected(seq=self.seq, ts=self.ts, code=3008, reason="unknown account")
            )
            return
        befores = {s: self.book(s) for s in self.config.instruments}
        victims = sorted(
            (
                o for o in self.open
                if o.account_id == c.account_id
                and (c.symbol is None or o.symbol == c.symbol)
                and (not c.session_id or o.session_id == c.session_id)
            ),
            key=lambda o: o.order_id,
        )
        for o in victims:
            self._cancel(o, "disconnect" if c.reason == "disconnect" else "cancel_all")
        self.events.append(
            AllCanceled(
                seq=self.seq, ts=self.ts, account_id=c.account_id, symbol=c.symbol,
                count=len(victims),
            )
        )
        for s in self.config.instruments:
            self._finish(s, befores[s])

    def _operator(self, c: Command) -> None:
        seq, ts = self.seq, self.ts
        ev = self.events
        if isinstance(c, CreateAccount):
            aid = self.next_account
            self.next_account += 1
            self.accounts[aid] = c.label
            for a in self.assets:
                self.bal[(aid, a)] = [0, 0]
            ev.append(AccountCreated(seq=seq, ts=ts, account_id=aid, label=c.label))
        elif isinstance(c, CreateApiKey):
            if not c.api_key or not c.secret or not c.permissions:
                ev.append(CommandRejected(seq=seq, ts=ts, code=1002, reason="invalid field value"))
            elif c.account_id == 0 or c.account_id not in self.accounts:
                ev.append(CommandRejected(seq=seq, ts=ts, code=3008, reason="unknown account"))
            elif c.api_key in self.keys:
                ev.append(CommandRejected(seq=seq, ts=ts, code=3009, reason="duplicate api key"))
            else:
                self.keys[c.api_key] = c.account_id
                ev.append(
                    ApiKeyCreated(
                        seq=seq, ts=ts, account_id=c.account_id, api_key=c.api_key,
                        permissions=c.permissions,
                    )
                )
        elif isinstance(c, RevokeApiKey):
            if c.api_key in self.keys:
                aid = self.keys.pop(c.api_key)
                ev.append(ApiKeyRevoked(seq=seq, ts=ts, account_id=aid, api_key=c.api_key))
            else:
                ev.append(CommandRejected(seq=seq, ts=ts, code=3010, reason="unknown api key"))
        elif isinstance(c, Deposit | Withdraw):
            if (
                c.asset not in self.net
                or c.amount <= 0
                or (isinstance(c, Deposit) and self.net[c.asset] + c.amount > 2**62)
            ):
                ev.append(CommandRejected(seq=seq, ts=ts, code=1002, reason="invalid field value"))
            elif c.account_id not in self.accounts or (
                isinstance(c, Deposit) and c.account_id == 0  # the fee account takes no deposits
            ):
                ev.append(CommandRejected(seq=seq, ts=ts, code=3008, reason="unknown account"))
            else:
                b = self.bal[(c.account_id, c.asset)]
                if isinstance(c, Deposit):
                    b[0] += c.amount
                    self.net[c.asset] += c.amount
                    ev.append(
                        Deposited(seq=seq, ts=ts, account_id=c.account_id, asset=c.asset,
                                  amount=c.amount, available=b[0])
                    )
                elif c.amount > b[0]:
                    ev.append(
                        CommandRejected(seq=seq, ts=ts, code=3001, reason="insufficient balance")
                    )
                else:
                    b[0] -= c.amount
                    self.net[c.asset] -= c.amount
                    ev.append(
                        Withdrawn(seq=seq, ts=ts, account_id=c.account_id, asset=c.asset,
                                  amount=c.amount, available=b[0])
                    )
        elif isinstance(c, ListAsset | ListInstrument | UpdateInstrument):
            self._listing(c)
        elif isinstance(c, HaltSymbol | ResumeSymbol):
            if c.symbol not in self.halted:
                ev.append(CommandRejected(seq=seq, ts=ts, code=1003, reason="unknown symbol"))
            elif isinstance(c, HaltSymbol):
                self.halted[c.symbol] = True
                ev.append(SymbolHalted(seq=seq, ts=ts, symbol=c.symbol))
            else:
                self.halted[c.symbol] = False
                ev.append(SymbolResumed(seq=seq, ts=ts, symbol=c.symbol))
        else:
            raise TypeError(c)


    def _listing(self, c: ListAsset | ListInstrument | UpdateInstrument) -> None:
        seq, ts = self.seq, self.ts
        ev = self.events
        try:
            if isinstance(c, ListAsset):
                asset = check_asset(c.asset, c.decimals)
                if asset.name in self.config.assets:
                    ev.append(CommandRejected(seq=seq, ts=ts, code=3011,
                                              reason=f"asset {c.asset} is already listed"))
                    return
                self.config.assets[asset.name] = asset
                self.assets.append(asset.name)
                self.net[asset.name] = 0
                for aid in self.accounts:
                    self.bal[(aid, asset.name)] = [0, 0]
                ev.append(AssetListed(seq=seq, ts=ts, asset=asset))
                return
            if isinstance(c, ListInstrument):
                if c.symbol in self.config.instruments:
                    ev.append(CommandRejected(seq=seq, ts=ts, code=3011,
                                              reason=f"instrument {c.symbol} is already listed"))
                    return
                raw = {"symbol": c.symbol, **{f: getattr(c, f) for f in CONFIG_FIELDS}}
                inst = derive_instrument(raw, self.config.assets)
                self.config.instruments[inst.symbol] = inst
                for table in (self.last_price, self.book_seq, self.trade_id):
                    table[inst.symbol] = 0
                self.halted[inst.symbol] = False
                ev.append(InstrumentListed(seq=seq, ts=ts, instrument=inst))
                return
            old = self.config.instruments.get(c.symbol)
            if old is None:
                ev.append(CommandRejected(seq=seq, ts=ts, code=1003,
                                          reason=f"unknown symbol {c.symbol}"))
                return
            changes = {
                f: getattr(c, f) for f in ("price_band_pct", "maker_fee_bps", "taker_fee_bps",
                                           "min_qty", "max_qty", "reference_price")
                if getattr(c, f) is not None
            }
            if not changes:
                ev.append(CommandRejected(seq=seq, ts=ts, code=1002,
                                          reason=f"instrument {c.symbol}: nothing to change"))
                return
            raw = {"symbol": c.symbol, **{f: getattr(old, f) for f in CONFIG_FIELDS}, **changes}
            new = derive_instrument(raw, self.config.assets)
        except ConfigError as exc:
            ev.append(CommandRejected(seq=seq, ts=ts, code=1002, reason=str(exc)))
            return
        # Waiting stop_market buys hold at the top of the band: re-hold them all under the
        # new band, or refuse the whole update when an account cannot cover it.
        stops = [o for o in self.open if o.symbol == c.symbol and o.order_type == "stop_market"
                 and o.side == "buy"]
        for o in stops:
            self._hold(o, -1)
        self.config.instruments[c.symbol] = new
        for o in stops:
            self._hold(o, 1)
        if any(self.bal[(o.account_id, new.quote)][0] < 0 for o in stops):
            for o in stops:
                self._hold(o, -1)
            self.config.instruments[c.symbol] = old
            for o in stops:
                self._hold(o, 1)
            ev.append(CommandRejected(
                seq=seq, ts=ts, code=3001,
                reason=f"instrument {c.symbol}: a waiting stop order's account cannot cover "
                "its hold under the new band"))
            return
        ev.append(InstrumentUpdated(seq=seq, ts=ts, instrument=new))


# ---------------------------------------------------------------------- random streams
class StreamGenerator:
    """Seeded random commands of every type over a small price range, so that orders cross,
    self-trade, run out of balance, hit the band and name unknown orders often."""

    def __init__(self, config: ExchangeConfig, seed: int, accounts: int = 4) -> None:
        self.config = config.copy()  # follows the listing events it observes
        self.rng = random.Random(seed)
        self.n_accounts = accounts
        self.symbols = list(config.instruments)
        self.coids = [f"c{i}" for i in range(12)]
        self.max_order_id = 1
        # (order_id, account_id, client id, symbol) of recent orders, mostly live ones.
        self.recent: list[tuple[int, int, str, str]] = []
        self.center = {s: i.reference_ticks for s, i in config.instruments.items()}

    def observe(self, events: list[Event]) -> None:
        """Follow the last trade prices and the ids of new orders, to aim at live ones."""
        for e in events:
            if isinstance(e, TradeExecuted):
                self.center[e.symbol] = e.price
            elif isinstance(e, InstrumentListed | InstrumentUpdated):
                self.config.instruments[e.instrument.symbol] = e.instrument
                if e.instrument.symbol not in self.symbols:
                    self.symbols.append(e.instrument.symbol)
            elif isinstance(e, AssetListed):
                self.config.assets[e.asset.name] = e.asset
            elif isinstance(e, OrderAccepted):
                self.recent.append((e.order_id, e.account_id, e.client_order_id, e.symbol))
                self.max_order_id = e.order_id
                if len(self.recent) > 40:
                    del self.recent[:10]
            elif (
                isinstance(e, OrderCanceled | OrderExpired)
                or (isinstance(e, OrderFilled) and e.status == "filled")
            ) and self.rng.random() < 0.9:
                # Mostly aim at live orders; sometimes keep a dead one to be named again.
                self.recent = [r for r in self.recent if r[0] != e.order_id]

    def setup(self) -> list[Command]:
        out: list[Command] = []
        for i in range(1, self.n_accounts + 1):
            out.append(CreateAccount(label=f"a{i}"))
            for asset in self.config.assets:
                out.append(Deposit(account_id=i, asset=asset, amount=10**13))
        return out

    def _price(self, inst: Instrument) -> int:
        rng = self.rng
        ref = self.center.get(inst.symbol, inst.reference_ticks)
        r = rng.random()
        if r < 0.95:
            return ref + rng.randint(-6, 6)
        if r < 0.985:
            return ref + rng.choice([-1, 1]) * ref * inst.price_band_pct // 100 + rng.randint(-2, 2)
        return rng.choice([0, -1, 1, ref * 3])

    def _qty(self, inst: Instrument) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.95:
            return rng.randint(1, 12)
        return rng.choice([0, -1, inst.max_lots, inst.max_lots + 1])

    def _account(self) -> int:
        r = self.rng.random()
        if r < 0.97:
            return self.rng.randint(1, self.n_accounts)
        return self.rng.choice([0, self.n_accounts + 5])

    def _symbol(self) -> str:
        return self.symbols[0] if self.rng.random() < 0.8 else self.rng.choice(
            [*self.symbols, "NOPE-USD"]
        )

    def _target(self, symbol: str) -> tuple[str, int, int | None, str | None]:
        """(symbol, account, order_id, client_order_id) of a cancel or amend."""
        rng = self.rng
        if self.recent and rng.random() < 0.85:
            oid, account, coid, own_symbol = rng.choice(self.recent)
            if rng.random() < 0.1:
                account = self._account()
            if rng.random() < 0.95:
                symbol = own_symbol
        else:
            oid = rng.randint(1, self.max_order_id + 2)
            account = self._account()
            coid = rng.choice(self.coids)
        r = rng.random()
        if r < 0.6:
            return symbol, account, oid, None
        if r < 0.9:
            return symbol, account, None, coid
        if r < 0.97:
            return symbol, account, oid, coid if rng.random() < 0.8 else rng.choice(self.coids)
        return symbol, account, None, None

    def _place(self, symbol: str, inst: Instrument) -> PlaceOrder:
        rng = self.rng
        r = rng.random()
        order_type = (
            "limit" if r < 0.7 else "market" if r < 0.82 else
            "stop_limit" if r < 0.92 else "stop_market"
        )
        price: int | None = self._price(inst) if order_type in ("limit", "stop_limit") else None
        if rng.random() < 0.02:
            price = None if price is not None else self._price(inst)
        side = rng.choice(["buy", "sell"])
        stop: int | None = None
        if order_type.startswith("stop"):
            # Mostly on the side it has to be (above the last price for a buy), sometimes not.
            ref = self.center.get(inst.symbol, inst.reference_ticks)
            away = rng.randint(1, 6) if rng.random() < 0.9 else -rng.randint(0, 3)
            stop = ref + away if side == "buy" else ref - away
        elif rng.random() < 0.01:
            stop = self._price(inst)
        qty = self._qty(inst)
        display = 0
        if order_type == "limit" and rng.random() < 0.15:
            display = rng.randint(1, 4) if rng.random() < 0.9 else rng.choice([0, -1, qty])
        return PlaceOrder(
            account_id=self._account(), symbol=symbol,
            side=side, order_type=order_type,  # type: ignore[arg-type]
            qty=qty, price=price,
            tif=rng.choices(["GTC", "IOC", "FOK"], [6, 2, 2])[0],  # type: ignore[arg-type]
            post_only=rng.random() < 0.1,
            client_order_id=rng.choice([*self.coids, "", "x" * 37]) if rng.random() < 0.02
            else rng.choice(self.coids),
            stp=rng.choice(["cancel_newest", "cancel_oldest", "cancel_both"]),
            session_id=rng.choice(["", "s1", "s2"]),
            stop_price=stop, display_qty=display,
        )

    def _cancel(self, symbol: str) -> CancelOrder:
        symbol, account, oid, coid = self._target(symbol)
        return CancelOrder(account_id=account, symbol=symbol, order_id=oid,
                           client_order_id=coid)

    def __iter__(self) -> Iterator[Command]:
        return self

    def __next__(self) -> Command:
        rng = self.rng
        r = rng.random()
        symbol = self._symbol()
        inst = self.config.instruments.get(symbol, self.config.instruments[self.symbols[0]])
        if r < 0.55:
            return self._place(symbol, inst)
        if r < 0.70:
            return self._cancel(symbol)
        if r < 0.72:
            # A batch of places or of cancels (sometimes empty or too long: rejected whole).
            n = rng.choice([1, 2, 3, 5, 20, 0, 21]) if rng.random() < 0.1 else rng.randint(1, 4)
            items: list[PlaceOrder | CancelOrder] = [
                self._place(symbol, inst) if rng.random() < 0.6 else self._cancel(symbol)
                for _ in range(n)
            ]
            return Batch(commands=tuple(items))
        if r < 0.88:
            symbol, account, oid, coid = self._target(symbol)
            new_qty = self._qty(inst) if rng.random() < 0.6 else None
            new_price = self._price(inst) if rng.random() < 0.6 else None
            new_stop = self._price(inst) if rng.random() < 0.15 else None
            return AmendOrder(account_id=account, symbol=symbol, order_id=oid,
                              client_order_id=coid, new_qty=new_qty, new_price=new_price,
                              new_stop_price=new_stop)
        if r < 0.91:
            return CancelAll(
                account_id=self._account(), symbol=symbol if rng.random() < 0.5 else None,
                session_id=rng.choice(["", "", "s1"]),
                reason=rng.choice(["user", "disconnect"]),
            )
        if r < 0.94:
            asset = rng.choice([*self.config.assets, "DOGE"])
            amount = rng.choice([rng.randint(1, 10**9), rng.randint(1, 10**12), 0, -5, 2**62])
            cls = Deposit if rng.random() < 0.5 else Withdraw
            return cls(account_id=self._account(), asset=asset, amount=amount)
        if r < 0.96:
            return (HaltSymbol if rng.random() < 0.25 else ResumeSymbol)(symbol=symbol)
        if r < 0.985:
            return RevokeApiKey(api_key=rng.choice(["k1", "k2", "k3", ""]))
        if r < 0.994:
            return CreateApiKey(
                account_id=self._account(), api_key=rng.choice(["k1", "k2", "k3", ""]),
                secret="s", permissions=("trade", "read"),
            )
        if r < 0.997:
            return self._update_instrument(symbol, inst)
        if r < 0.998:
            return self._listing()
        return CreateAccount(label="late")

    def _update_instrument(self, symbol: str, inst: Instrument) -> UpdateInstrument:
        """New live parameters, now and then out of range, off the grid, or none at all."""
        rng = self.rng
        fields: dict[str, object] = {}
        if rng.random() < 0.5:
            fields["price_band_pct"] = rng.choice([2, 5, 10, 20, 50, 0, 101])
        if rng.random() < 0.3:
            fields["maker_fee_bps"] = rng.choice([0, 5, 10, 10_000])
        if rng.random() < 0.3:
            fields["taker_fee_bps"] = rng.choice([0, 15, 30, -1])
        if rng.random() < 0.3:
            center = self.center.get(inst.symbol, inst.reference_ticks)
            ticks = max(1, center + rng.randint(-8, 8))
            fields["reference_price"] = (inst.ticks_to_price(ticks) if rng.random() < 0.9
                                         else rng.choice(["0", "1e3", inst.tick_size + "1"]))
        if rng.random() < 0.2:
            fields["max_qty"] = inst.lots_to_qty(rng.choice([6, 12, 1000, inst.min_lots]))
        if rng.random() < 0.1:
            fields["min_qty"] = inst.lots_to_qty(rng.choice([1, 2, 3, inst.max_lots + 1]))
        return UpdateInstrument(symbol=symbol, **fields)  # type: ignore[arg-type]

    def _listing(self) -> ListAsset | ListInstrument:
        """A new asset, or an instrument on it (sometimes again, or on an unknown asset)."""
        rng = self.rng
        if rng.random() < 0.4:
            return ListAsset(asset=rng.choice(["SOL", "SOL", "bad name"]),
                             decimals=rng.choice([9, 9, 19]))
        return ListInstrument(
            symbol=rng.choice(["SOL-USD", "SOL-USD", "BTC-USD"]), base="SOL", quote="USD",
            tick_size=rng.choice(["0.01", "0.01", "0.0000001"]), lot_size="0.01",
            min_qty="0.01", max_qty="10000", price_band_pct=10, maker_fee_bps=10,
            taker_fee_bps=20, reference_price="150.00",
        )
