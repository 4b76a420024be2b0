"""The gateway's reconnecting link to the matcher, and its backpressure (docs/ARCHITECTURE.md).

Commands go to the matcher through a bounded in-flight window. When the window is full they
wait in a bounded queue; when that is full too, a new order is refused at once (4002).
Cancels (order.cancel, orders.cancel_all, cancel-on-disconnect) have their own lane: they may
use `cancel_reserve` slots beyond the window, wait in their own queue, and are served first,
so they are never refused for load while new orders are.

The link reconnects with exponential backoff. What the matcher must know about this gateway
(account interest, sessions with cancel-on-disconnect, market-data subscriptions) is kept
here and announced again after each reconnect. Commands in flight when the link breaks fail
with LinkDown (outcome unknown: 5001); commands still queued were never sent and fail with
Unavailable, as does anything submitted while the link is down.

Also implements gateway.marketdata.source.MarketDataSource for the market-data fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from exchange.link.client import LinkClient, LinkDown
from exchange.link.codec import parse_address
from exchange.link.messages import KeyLimitsChanged, Refused, Result, Welcome
from exchange.model.commands import Command
from exchange.model.events import OrderEvent
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import Query, QueryResult
from exchange.model.sessions import CancelOnDisconnect
from gateway.marketdata.source import LinkStateHandler, MarketDataHandler
from gateway.metrics import GatewayMetrics

log = structlog.get_logger("gateway.core.matcher_link")

ReportsHandler = Callable[[list[OrderEvent]], None]
KeyRevokedHandler = Callable[[str], None]
KeyLimitsHandler = Callable[[KeyLimitsChanged], None]
# What a submitted command comes to: the matcher's Result or Refused, LinkDown (sent, outcome
# unknown) or Unavailable (never sent). Called once, on the event loop.
Outcome = Result | Refused | LinkDown | ConnectionError
OutcomeCallback = Callable[[Outcome], None]
Connector = Callable[..., Awaitable[LinkClient]]


class Unavailable(ConnectionError):
    """The link is down: the request was not sent (5002)."""


class Overloaded(Exception):
    """Queue full: refused at once, nothing sent (4002)."""

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__("overloaded")
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True, slots=True)
class LinkLimits:
    window: int = 256  # commands in flight to the matcher
    queue_size: int = 1024  # new orders waiting for a window slot
    cancel_reserve: int = 64  # extra in-flight slots only cancels may use
    cancel_queue_size: int = 8192  # cancels waiting for a slot
    max_asks: int = 1024  # read-only queries in flight
    retry_after_ms: int = 100  # suggested wait on 4002
    backoff_min_s: float = 0.05
    backoff_max_s: float = 2.0


@dataclass(slots=True)
class _Waiting:
    command: Command
    done: OutcomeCallback


def _resolve(ticket: asyncio.Future[Result | Refused]) -> OutcomeCallback:
    def resolve(outcome: Outcome) -> None:
        if ticket.done():
            return
        if isinstance(outcome, Result | Refused):
            ticket.set_result(outcome)
        else:
            ticket.set_exception(outcome)

    return resolve


@dataclass(slots=True)
class _Session:
    account_id: int
    cancel_on_disconnect: CancelOnDisconnect


@dataclass(slots=True)
class _Announced:
    accounts: Counter[int] = field(default_factory=Counter)
    sessions: dict[str, _Session] = field(default_factory=dict)
    md_symbols: set[str] = field(default_factory=set)


class MatcherLink:
    def __init__(
        self,
        address: str,
        gateway_id: str,
        *,
        limits: LinkLimits | None = None,
        metrics: GatewayMetrics | None = None,
        connector: Connector = LinkClient.connect,
    ) -> None:
        parse_address(address)  # a bad address fails here, not in the reconnect loop
        self.address = address
        self.gateway_id = gateway_id
        self.limits = limits or LinkLimits()
        self.metrics = metrics or GatewayMetrics()
        self._connector = connector
        self._client: LinkClient | None = None
        self.config: ExchangeConfig | None = None
        self.symbols: list[str] = []
        self._up = asyncio.Event()
        self._ever_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._asks = 0
        self._queue: deque[_Waiting] = deque()
        self._cancel_queue: deque[_Waiting] = deque()
        self._announced = _Announced()
        self._reports_handler: ReportsHandler | None = None
        self._md_handler: MarketDataHandler | None = None
        self._key_revoked_handler: KeyRevokedHandler | None = None
        self._key_limits_handler: KeyLimitsHandler | None = None
        self._state_handlers: list[LinkStateHandler] = []
        self.last_error: str = "not connected yet"
        # Read when scraped, not set per command: the gauges cost nothing on the hot path.
        m = self.metrics
        m.in_flight.set_function(lambda: self._in_flight)
        m.asks_in_flight.set_function(lambda: self._asks)
        m.queue_depth.labels("order").set_function(lambda: len(self._queue))
        m.queue_depth.labels("cancel").set_function(lambda: len(self._cancel_queue))
        self._loop = asyncio.get_running_loop()

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="matcher-link")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        client = self._client
        if client is not None:
            await client.close()
        self._link_lost()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    async def wait_up(self) -> None:
        await self._up.wait()

    async def wait_config(self) -> ExchangeConfig:
        """The exchange config from the first Welcome (the gateway serves nothing before it)."""
        await self._ever_up.wait()
        assert self.config is not None
        return self.config

    async def _run(self) -> None:
        delay = self.limits.backoff_min_s
        while True:
            try:
                client = await self._connector(
                    self.address,
                    self.gateway_id,
                    on_reports=self._on_reports,
                    on_market_data=self._on_market_data,
                    on_key_revoked=self._on_key_revoked,
                    on_key_limits=self._on_key_limits,
                )
            except Exception as exc:  # LinkDown, OSError, a refused handshake...
                self.last_error = str(exc)
                log.warning("matcher_connect_failed", address=self.address, error=str(exc),
                            retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.limits.backoff_max_s)
                continue
            delay = self.limits.backoff_min_s
            self._client = client
            client.on_instruments = self._on_instruments
            self._on_instruments(client.welcome)
            welcome = client.welcome
            with contextlib.suppress(LinkDown):
                self._announce(client)
            if not client.closed:
                self._up.set()
                self._ever_up.set()
                self.metrics.link_up.set(1)
                self.metrics.link_reconnects.inc()
                log.info("matcher_link_up", address=self.address, last_seq=welcome.last_seq)
                self._notify_state(True)
                self._pump()
            await client.wait_closed()
            self.last_error = "link to the matcher lost"
            self._link_lost()
            log.warning("matcher_link_down", address=self.address)

    def _announce(self, client: LinkClient) -> None:
        state = self._announced
        if state.accounts:
            client.interest(add=sorted(state.accounts))
        for sid, sess in state.sessions.items():
            client.session_opened(sid, sess.account_id, sess.cancel_on_disconnect)
        if state.md_symbols:
            client.md_subscribe(sorted(state.md_symbols))

    def _link_lost(self) -> None:
        was_up = self._up.is_set()
        self._client = None
        self._up.clear()
        self.metrics.link_up.set(0)
        # Never sent: the matcher has not seen these.
        for queue in (self._cancel_queue, self._queue):
            while queue:
                self._call(queue.popleft().done, Unavailable("matcher link down"))
        if was_up:
            self._notify_state(False)

    def _notify_state(self, up: bool) -> None:
        for handler in list(self._state_handlers):
            try:
                handler(up)
            except Exception:
                log.exception("link_state_handler_failed")

    # ---- commands --------------------------------------------------------------------------

    def submit(self, command: Command, *, cancel: bool = False) -> asyncio.Future[Result | Refused]:
        """Send or queue `command`; raises Unavailable or Overloaded synchronously.

        The returned future resolves with the matcher's Result/Refused, or fails with LinkDown
        (sent, outcome unknown) or Unavailable (never sent). Callers submit in arrival order
        without awaiting in between, so one session's commands reach the matcher in order.
        """
        ticket: asyncio.Future[Result | Refused] = self._loop.create_future()
        self.submit_to(command, _resolve(ticket), cancel=cancel)
        return ticket

    def submit_to(self, command: Command, done: OutcomeCallback, *, cancel: bool = False
                  ) -> None:
        """`submit` without a future: `done` is called once with the outcome, synchronously
        as the matcher's answer is read, after the reports it carries were delivered. The
        hot path: no future, no extra event-loop turn per request."""
        client = self._live_client()
        if self._accept(command, done, cancel):
            return
        # Full. Answers already in the socket free slots: take them before refusing, so a
        # gateway busy with a flood refuses only what the matcher really has not answered.
        client.poll()
        self._live_client()  # what poll() read may have been the link's end
        if not self._accept(command, done, cancel):
            self.metrics.overloaded.labels("cancel" if cancel else "order").inc()
            raise Overloaded(self.limits.retry_after_ms)

    def _accept(self, command: Command, done: OutcomeCallback, cancel: bool) -> bool:
        """Send `command` or queue it in its lane; False when that lane is full."""
        lim = self.limits
        if cancel:
            if not self._cancel_queue and self._in_flight < lim.window + lim.cancel_reserve:
                self._send(command, done)
            elif len(self._cancel_queue) < lim.cancel_queue_size:
                self._cancel_queue.append(_Waiting(command, done))
            else:
                return False
        elif not self._queue and not self._cancel_queue and self._in_flight < lim.window:
            self._send(command, done)
        elif len(self._queue) < lim.queue_size:
            self._queue.append(_Waiting(command, done))
        else:
            return False
        return True

    def _send(self, command: Command, done: OutcomeCallback) -> None:
        client = self._client
        assert client is not None
        try:
            client.submit_callback(command, lambda outcome: self._finished(outcome, done))
        except LinkDown as exc:
            self._call(done, Unavailable(str(exc)))
            return
        self._in_flight += 1

    def _finished(self, outcome: Result | Refused | LinkDown, done: OutcomeCallback) -> None:
        self._in_flight -= 1
        # Reports first, in link order (Reports frames are delivered as they are read too).
        if type(outcome) is Result and self._reports_handler is not None:
            self._deliver(outcome.events)  # type: ignore[arg-type]
        self._call(done, outcome)
        self._pump()

    @staticmethod
    def _call(done: OutcomeCallback, outcome: Outcome) -> None:
        # A failing answer is the caller's bug: it must not stop the window from moving.
        try:
            done(outcome)
        except Exception:
            log.exception("submit_callback_failed")

    def _pump(self) -> None:
        lim = self.limits
        if self._client is not None and self._up.is_set():
            while self._cancel_queue and self._in_flight < lim.window + lim.cancel_reserve:
                item = self._cancel_queue.popleft()
                self._send(item.command, item.done)
            while self._queue and not self._cancel_queue and self._in_flight < lim.window:
                item = self._queue.popleft()
                self._send(item.command, item.done)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._cancel_queue)

    # ---- queries -----------------------------------------------------------------------------

    def _live_client(self) -> LinkClient:
        """The link's client while it is up; Unavailable (nothing sent) otherwise."""
        client = self._client
        if client is None or not self._up.is_set():
            raise Unavailable("matcher link down")
        return client

    def ask_nowait(self, query: Query) -> asyncio.Future[QueryResult]:
        client = self._live_client()
        if self._asks >= self.limits.max_asks:
            self.metrics.overloaded.labels("ask").inc()
            raise Overloaded(self.limits.retry_after_ms)
        try:
            fut = client.ask_nowait(query)
        except LinkDown as exc:
            raise Unavailable(str(exc)) from exc
        self._asks += 1
        fut.add_done_callback(self._ask_done)
        return fut

    def _ask_done(self, fut: asyncio.Future[QueryResult]) -> None:
        self._asks -= 1
        if not fut.cancelled():
            fut.exception()  # retrieved here; the caller may have stopped waiting

    async def ask(self, query: Query) -> QueryResult:
        """MarketDataSource.ask: raises ConnectionError while the link is down."""
        return await self.ask_nowait(query)

    # ---- what the matcher must know about us --------------------------------------------------

    def add_account(self, account_id: int) -> None:
        counts = self._announced.accounts
        counts[account_id] += 1
        if counts[account_id] == 1:
            self._notice(lambda c: c.interest(add=[account_id]))

    def remove_account(self, account_id: int) -> None:
        counts = self._announced.accounts
        counts[account_id] -= 1
        if counts[account_id] <= 0:
            del counts[account_id]
            self._notice(lambda c: c.interest(remove=[account_id]))

    def session_opened(self, session_id: str, account_id: int,
                       cancel_on_disconnect: CancelOnDisconnect) -> None:
        self._announced.sessions[session_id] = _Session(account_id, cancel_on_disconnect)
        self._notice(lambda c: c.session_opened(session_id, account_id, cancel_on_disconnect))

    def session_closed(self, session_id: str) -> None:
        if self._announced.sessions.pop(session_id, None) is not None:
            self._notice(lambda c: c.session_closed(session_id))

    def _notice(self, send: Callable[[LinkClient], None]) -> None:
        client = self._client
        if client is not None and not client.closed:
            with contextlib.suppress(LinkDown):
                send(client)

    # ---- reports and market data ------------------------------------------------------------

    def set_reports_handler(self, handler: ReportsHandler) -> None:
        self._reports_handler = handler

    def _on_reports(self, events: list[OrderEvent]) -> None:
        # Delivered as read, like Results (submit_to): both keep the link's frame order.
        self._deliver(events)

    def _deliver(self, events: list[OrderEvent]) -> None:
        if self._reports_handler is not None:
            try:
                self._reports_handler(events)
            except Exception:
                log.exception("reports_handler_failed")

    def md_subscribe(self, symbols: list[str]) -> None:
        new = [s for s in symbols if s not in self._announced.md_symbols]
        self._announced.md_symbols.update(new)
        if new:
            self._notice(lambda c: c.md_subscribe(new))

    def md_unsubscribe(self, symbols: list[str]) -> None:
        gone = [s for s in symbols if s in self._announced.md_symbols]
        self._announced.md_symbols.difference_update(gone)
        if gone:
            self._notice(lambda c: c.md_unsubscribe(gone))

    def set_market_data_handler(self, handler: MarketDataHandler) -> None:
        self._md_handler = handler

    def _on_instruments(self, welcome: Welcome) -> None:
        """The matcher's live assets and instruments, from a Welcome (every (re)connect) or
        pushed after a listing command: the first becomes `config`, which the whole app
        shares; later ones update that same object in place, so every transport validates
        and renders with them from the next request on."""
        if self.config is None:
            self.config = welcome.config.copy()
        else:
            self.config.refresh(welcome.config)
        self.symbols = list(welcome.symbols)

    def set_key_revoked_handler(self, handler: KeyRevokedHandler) -> None:
        self._key_revoked_handler = handler

    def _on_key_revoked(self, api_key: str) -> None:
        if self._key_revoked_handler is not None:
            self._key_revoked_handler(api_key)

    def set_key_limits_handler(self, handler: KeyLimitsHandler) -> None:
        self._key_limits_handler = handler

    def _on_key_limits(self, changed: KeyLimitsChanged) -> None:
        if self._key_limits_handler is not None:
            self._key_limits_handler(changed)

    def set_link_state_handler(self, handler: LinkStateHandler) -> None:
        self._state_handlers.append(handler)

    def _on_market_data(self, symbol: str, payload: bytes) -> None:
        if self._md_handler is not None:
            self._md_handler(symbol, payload)
