"""The account report log: a contiguous sequence per account over its execution reports, and
the newest reports kept (bounded) so that a client that was away can ask what it missed.

Every order event (accepted, filled, canceled, amended, rejected, expired) of account A gets
`account_seq` = A's previous one + 1, before the matcher sends or publishes anything. The
numbering is a pure function of the event stream, so replaying the journal from a snapshot
gives every event the same number again; the counters and the kept reports are part of the
matcher's snapshot (`ReportingEngine.snapshot`), so a restart continues where it stopped.

The same kept reports answer an account's history: its fills (GetAccountTrades,
account.trades) and its closed orders as the events that closed them (GetOrderHistory,
orders.history).

Retention: the newest `capacity` reports over all accounts (oldest evicted first, whichever
account it belongs to). A request for reports older than the oldest kept one of that account
is answered with `gap=True`: the client must rebuild from order state (orders.open,
order.status) instead of being given a page with a hole in it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import msgspec
import structlog

from exchange.matcher.engine_port import EngineFactory, EngineLike
from exchange.matcher.metrics import REPORTS_KEPT
from exchange.model.commands import Command
from exchange.model.events import ORDER_EVENTS, Event, OrderEvent, OrderFilled
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import (
    MAX_HISTORY_LIMIT,
    MAX_REPORTS_PAGE,
    ClosedOrders,
    FillList,
    GetAccountTrades,
    GetOrderHistory,
    GetReports,
    Query,
    QueryResult,
    ReportPage,
)

_log = structlog.get_logger("exchange.matcher.report_log")

DEFAULT_CAPACITY = 100_000  # reports kept over all accounts (~30 MB)
MAX_PAGE = MAX_REPORTS_PAGE

_ORDER_EVENT_TYPES = frozenset(ORDER_EVENTS)
# The statuses an order closes with (a rejected place never became an order).
_CLOSED = frozenset({"filled", "canceled", "expired"})
_set = msgspec.structs.force_setattr


class ReportLogState(msgspec.Struct, array_like=True):
    """The log as snapshot records: counters per account, kept reports oldest first."""

    last: list[tuple[int, int]]  # (account_id, last account_seq), in first-report order
    kept: list[OrderEvent]  # in the global order they were recorded


class ReportLog:
    __slots__ = ("_kept", "_last", "_order", "capacity", "size")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("report log capacity must be at least 1")
        self.capacity = capacity
        self._last: dict[int, int] = {}
        self._kept: dict[int, deque[OrderEvent]] = {}
        # Account ids in the order their kept reports were recorded: the eviction order.
        self._order: deque[int] = deque()
        self.size = 0

    def record(self, events: list[Event]) -> None:
        """Number the order events of one command (in place: they are fresh and unseen)."""
        order_types = _ORDER_EVENT_TYPES
        for event in events:
            if type(event) not in order_types:
                continue
            account_id: int = event.account_id  # type: ignore[union-attr]
            seq = self._last.get(account_id, 0) + 1
            self._last[account_id] = seq
            _set(event, "account_seq", seq)
            kept = self._kept.get(account_id)
            if kept is None:
                kept = self._kept[account_id] = deque()
            kept.append(event)  # type: ignore[arg-type]
            self._order.append(account_id)
            self.size += 1
            if self.size > self.capacity:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        account_id = self._order.popleft()
        kept = self._kept[account_id]
        kept.popleft()
        if not kept:
            del self._kept[account_id]
        self.size -= 1

    def last_seq(self, account_id: int) -> int:
        return self._last.get(account_id, 0)

    def page(self, query: GetReports) -> ReportPage:
        account_id = query.account_id
        last = self._last.get(account_id, 0)
        kept = self._kept.get(account_id)
        first_kept = kept[0].account_seq if kept else last + 1
        after = max(0, query.after_seq)
        if after + 1 < first_kept:
            return ReportPage(account_id=account_id, events=[], last_seq=last,
                              first_kept=first_kept, gap=True)
        limit = max(0, min(query.limit, MAX_PAGE))
        events: list[OrderEvent] = []
        if kept and after < last and limit:
            # Kept reports are contiguous: the one after `after` sits at a known index.
            start = after + 1 - first_kept
            for i in range(start, min(start + limit, len(kept))):
                events.append(kept[i])
        return ReportPage(account_id=account_id, events=events, last_seq=last,
                          first_kept=first_kept)

    def fills(self, query: GetAccountTrades) -> FillList:
        """The account's kept fills (account.trades), oldest first."""
        limit = max(0, min(query.limit, MAX_HISTORY_LIMIT))
        symbol = query.symbol
        fills = [
            e for e in self._kept.get(query.account_id, ())
            if type(e) is OrderFilled and (symbol is None or e.symbol == symbol)
        ]
        if query.from_trade_id is not None:
            start = query.from_trade_id
            return FillList(fills=[f for f in fills if f.trade_id >= start][:limit])
        return FillList(fills=fills[max(0, len(fills) - limit) :] if limit else [])

    def closed_orders(self, query: GetOrderHistory) -> ClosedOrders:
        """The account's kept closing events (orders.history), newest first."""
        limit = max(0, min(query.limit, MAX_HISTORY_LIMIT))
        symbol = query.symbol
        out: list[OrderEvent] = []
        if limit:
            for e in reversed(self._kept.get(query.account_id, ())):
                if e.status in _CLOSED and (symbol is None or e.symbol == symbol):
                    out.append(e)
                    if len(out) == limit:
                        break
        return ClosedOrders(orders=out)

    def to_state(self) -> ReportLogState:
        kept: list[OrderEvent] = []
        # The global order is rebuilt from the per-account deques by walking `_order`.
        cursors: dict[int, int] = {}
        for account_id in self._order:
            i = cursors.get(account_id, 0)
            kept.append(self._kept[account_id][i])
            cursors[account_id] = i + 1
        return ReportLogState(last=list(self._last.items()), kept=kept)

    def load_state(self, state: ReportLogState) -> None:
        self._last = dict(state.last)
        self._kept = {}
        self._order = deque()
        self.size = 0
        for event in state.kept:
            self._kept.setdefault(event.account_id, deque()).append(event)
            self._order.append(event.account_id)
            self.size += 1
        while self.size > self.capacity:
            self._evict_oldest()


class _Snapshot(msgspec.Struct, array_like=True):
    """A matcher snapshot: the engine's own bytes beside the report log."""

    magic: str
    engine: bytes
    reports: ReportLogState


_MAGIC = "engine+reports/1"
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


class ReportingEngine:
    """An engine with the report log in front: what the matcher runs (EngineLike)."""

    def __init__(self, inner: EngineLike, log: ReportLog) -> None:
        self.inner = inner
        self.reports = log
        self._apply = inner.apply
        self._record = log.record

    @property
    def last_seq(self) -> int:
        return self.inner.last_seq

    @property
    def config(self) -> ExchangeConfig:
        return self.inner.config

    @property
    def listing_changes(self) -> int:
        return self.inner.listing_changes

    def apply(self, command: Command, seq: int, ts: int) -> list[Event]:
        events = self._apply(command, seq, ts)
        self._record(events)
        return events

    def answer(self, query: Query) -> QueryResult:
        kind = type(query)
        if kind is GetReports:
            return self.reports.page(query)  # type: ignore[arg-type]
        if kind is GetAccountTrades:
            return self.reports.fills(query)  # type: ignore[arg-type]
        if kind is GetOrderHistory:
            return self.reports.closed_orders(query)  # type: ignore[arg-type]
        return self.inner.answer(query)

    def snapshot(self) -> bytes:
        return _ENCODER.encode(
            _Snapshot(magic=_MAGIC, engine=self.inner.snapshot(), reports=self.reports.to_state())
        )

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    def validate(self) -> None:
        self.inner.validate()

    def __getattr__(self, name: str) -> Any:
        # Tests and tools reach into the engine's own state (balances, books) through this.
        return getattr(self.inner, name)


class ReportingFactory:
    """Wraps an engine factory: every engine it makes keeps the report log."""

    def __init__(self, inner: EngineFactory, capacity: int = DEFAULT_CAPACITY) -> None:
        self._inner = inner
        self.capacity = capacity

    def new(self, config: ExchangeConfig) -> EngineLike:
        engine = ReportingEngine(self._inner.new(config), ReportLog(self.capacity))
        REPORTS_KEPT.set_function(lambda: engine.reports.size)
        return engine

    def restore(self, config: ExchangeConfig, data: bytes) -> EngineLike:
        log = ReportLog(self.capacity)
        try:
            snap = _DECODER.decode(data)
        except msgspec.DecodeError:
            # A snapshot written before the report log existed: the engine's bytes alone.
            # Account sequences start again from 1 after it (logged: clients resync once).
            _log.warning("snapshot_without_report_log",
                         detail="account report sequences restart at 1")
            inner = self._inner.restore(config, data)
        else:
            if snap.magic != _MAGIC:
                raise ValueError(f"not a matcher snapshot: {snap.magic!r}")
            log.load_state(snap.reports)
            inner = self._inner.restore(config, snap.engine)
        engine = ReportingEngine(inner, log)
        REPORTS_KEPT.set_function(lambda: engine.reports.size)
        return engine
