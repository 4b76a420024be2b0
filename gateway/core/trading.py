"""The trading core: what every order-entry transport (/ws/trade, FIX) does the same way.

Logon and authentication, the session registry, permissions, the per-key order budget,
commands to the matcher with a deadline (and cancels in their own lane), the one mapping
from outcomes to result codes (outcomes.py), and cancel-on-disconnect. A transport parses
its wire format into commands, hands each to `submit` or `ask` with a `Pending` of its own,
and writes what its `answer` / `refuse` are called with in its own format.

The hot path allocates one `Pending` per request and no future or task: the matcher link
calls `Pending.finish` as the answer is read, and one shared timer (deadlines.py) fires the
timeouts of every transport's requests, which all wait the same `request_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from exchange.link.client import LinkDown
from exchange.link.messages import KeyLimitsChanged, Result
from exchange.model.codes import Code
from exchange.model.commands import CancelAll, Command
from exchange.model.events import AllCanceled
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import ApiKeyInfo, GetApiKey, Query, QueryResult
from exchange.model.sessions import CancelOnDisconnect
from gateway.core import auth
from gateway.core.abuse import LogonThrottle, LogSampler
from gateway.core.deadlines import Deadlines
from gateway.core.matcher_link import MatcherLink, Overloaded, Unavailable
from gateway.core.outcomes import INTERNAL_ERROR, TIMED_OUT, Refusal, refusal
from gateway.core.ratelimit import BucketTable, KeyTiers, RateLimit
from gateway.core.sessions import SessionRegistry, TradingSession
from gateway.core.validation import RequestError
from gateway.metrics import GatewayMetrics

log = structlog.get_logger("gateway.trade")

ORDERS_LIMIT = RateLimit(type="orders", limit=100, window_ms=1_000)
REQUESTS_LIMIT = RateLimit(type="requests", limit=500, window_ms=1_000)
TRADE = "trade"  # permission for commands that change orders
READ = "read"  # permission for queries
GOING_AWAY = 1001  # WebSocket close code for a gateway that stops (FIX sends a Logout)

POLICY_VIOLATION = 1008  # WebSocket close code for a missed logon or idle deadline
KEY_REVOKED = "api key revoked"  # the close reason (FIX: the Logout's Text) of such sessions
_MIN_SWEEP_S = 0.05
# Unknown keys are remembered this long: a key created meanwhile can log on after it.
_UNKNOWN_KEY_TTL_S = 2.0
_COD_RETRIES = 100
_COD_RETRY_S = 0.01


@dataclass(frozen=True, slots=True)
class TradeLimits:
    max_message_bytes: int = 64 * 1024
    max_connections: int = 10_000
    max_connections_per_key: int = 32
    send_buffer: int = 1024  # messages (of 512 bytes: the bound is in bytes) buffered per client
    heartbeat_s: float = 10.0  # WebSocket ping interval; a missed pong closes
    idle_timeout_s: float = 300.0  # no message at all from the client
    logon_timeout_s: float = 30.0  # connected but not logged on
    # Connections not logged on yet, counted apart: they can never crowd out traders, who
    # have max_connections of their own.
    max_pre_logon: int = 1_000
    request_timeout_s: float = 10.0  # matcher answer, every transport; then 5001
    orders: RateLimit = ORDERS_LIMIT
    requests: RateLimit = REQUESTS_LIMIT
    key_cache_size: int = 10_000
    key_cache_ttl_s: float = 30.0
    nonce_cache_size: int = 100_000
    logon_window_ms: int = auth.WINDOW_MS


class Pending:
    """One request waiting for the matcher: answered once, by its outcome or its deadline.

    A transport subclasses it: `answer` gets a `Result` or a query's answer to render,
    `refuse` gets everything else already mapped to a code (outcomes.py), including the
    5001 of a request unanswered by its deadline.
    """

    __slots__ = ("answered", "core", "deadline", "query")

    def __init__(self, core: TradingCore, received_at: float, *, query: bool = False) -> None:
        self.core = core
        self.deadline = received_at + core.request_timeout_s
        self.query = query
        self.answered = False

    def answer(self, outcome: Any) -> None:
        raise NotImplementedError

    def refuse(self, refusal: Refusal) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """What the request was, for the log of an answer that failed."""
        return type(self).__name__

    def timeout(self) -> None:
        if self.answered:
            return
        self.answered = True
        try:
            self.refuse(TIMED_OUT)
        except Exception:
            # Logged, not raised: the shared timer goes on to the requests due after this.
            log.exception("request_timeout_failed", request=self.describe())
        finally:
            self.core._settled()

    def finish(self, outcome: Any) -> None:
        """Called once with a Result, Refused, query result, or the exception it came to."""
        if self.answered:
            return  # answered 5001 already
        self.answered = True
        try:
            if type(outcome) is Result:
                self.answer(outcome)
            else:
                refused = refusal(outcome, query=self.query,
                                  retry_after_ms=self.core.link.limits.retry_after_ms)
                if refused is None:
                    self.answer(outcome)
                else:
                    self.refuse(refused)
        except Exception:
            log.exception("request_failed", request=self.describe())
            self.refuse(INTERNAL_ERROR)
        finally:
            self.core._settled()

    def finish_future(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.finish(Unavailable("cancelled"))
        else:
            exc = fut.exception()
            self.finish(exc if exc is not None else fut.result())


class TradingCore:
    """State shared by every trading session of one gateway, whatever its transport."""

    def __init__(self, link: MatcherLink, config: ExchangeConfig, limits: TradeLimits,
                 metrics: GatewayMetrics, shared_nonces: auth.SharedNonces | None = None
                 ) -> None:
        self.link = link
        self.config = config
        self.limits = limits
        self.request_timeout_s = limits.request_timeout_s
        self.metrics = metrics
        self.sessions = SessionRegistry()
        self.keys = auth.KeyCache(limits.key_cache_size, limits.key_cache_ttl_s)
        self.nonces = auth.NonceCache(limits.logon_window_ms, limits.nonce_cache_size)
        self.order_buckets = BucketTable(limits.orders)
        self.shared_nonces = shared_nonces
        self._tasks: set[asyncio.Task[None]] = set()
        self._unanswered = 0
        self._deadlines = Deadlines()
        self._idle = asyncio.Event()
        self._idle.set()
        self.throttle = LogonThrottle()
        self.rejection_log = LogSampler()
        self._unknown_keys = auth.UnknownKeys(limits.key_cache_size, _UNKNOWN_KEY_TTL_S)
        self._sweeper: asyncio.Task[None] | None = None
        link.set_reports_handler(lambda events: self.sessions.deliver(self.config, events))
        self._revoked = auth.RevokedKeys(limits.key_cache_size)
        link.set_key_revoked_handler(self.key_revoked)
        # The tiers the matcher pushed, newest first: they win over a key record fetched
        # before the push (a logon under way while the tier changed).
        self._pushed_tiers = KeyTiers(limits.key_cache_size)
        link.set_key_limits_handler(self.key_limits_changed)
        link.set_link_state_handler(self._link_state)

    # ---- lifecycle ------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task the gateway waits for (bounded) when it stops."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every session (their cancel-on-disconnect runs as for any close)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.all):
            session.close("gateway shutting down", GOING_AWAY)

    async def drain(self, limit_s: float = 2.0) -> None:
        """Let answers and cancel-on-disconnect finish (bounded), then cancel what is left."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=limit_s)
        if self._unanswered:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit_s):
                    await self._idle.wait()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Stopping: what is still unanswered gets its outcome from the link as it closes,
        # not a 5001 from a timer firing on a stopped gateway.
        self._deadlines.close()

    @property
    def unanswered(self) -> int:
        """Requests waiting for the matcher, every transport together."""
        return self._unanswered

    # ---- sessions -------------------------------------------------------------------------

    def full(self) -> bool:
        """No room for another connection not logged on yet (every transport counts).

        Connections that have not logged on are bounded by max_pre_logon, apart from the
        max_connections logged-on ones (checked at logon), so unauthenticated clients can
        never take the traders' places.
        """
        return self.pre_logon() >= self.limits.max_pre_logon

    def pre_logon(self) -> int:
        return len(self.sessions) - self.sessions.logged_on_count

    def opened(self, session: TradingSession) -> None:
        self.sessions.add(session)
        self.metrics.sessions.set(len(self.sessions))
        self.metrics.sessions_pre_logon.set(self.pre_logon())
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_deadlines())

    async def _sweep_deadlines(self) -> None:
        """Close sessions past their logon or idle deadline.

        The deadlines are measured from what the client sent (never from pongs, which
        aiohttp answers by restarting its own receive timeout), and checked here for every
        transport by one task; they fire within a tenth of the shorter one.
        """
        lim = self.limits
        interval = max(_MIN_SWEEP_S, min(lim.logon_timeout_s, lim.idle_timeout_s) / 10)
        loop = asyncio.get_running_loop()
        while self.sessions.all:
            await asyncio.sleep(interval)
            now = loop.time()
            for session in list(self.sessions.all):
                if not session.logged_on:
                    if now - session.opened_at > lim.logon_timeout_s:
                        session.close("no logon", POLICY_VIOLATION)
                elif session.idle_by_core and now - session.last_rx > lim.idle_timeout_s:
                    session.close("idle timeout", POLICY_VIOLATION)

    def closed(self, session: TradingSession) -> None:
        """The session is gone: forget it, and cancel its orders if it asked for that."""
        self.sessions.remove(session)
        self.metrics.sessions.set(len(self.sessions))
        self.metrics.sessions_pre_logon.set(self.pre_logon())
        if session.account_id is not None:
            self.link.remove_account(session.account_id)
            if session.cancel_on_disconnect is not CancelOnDisconnect.NONE:
                self.cancel_on_disconnect(session)

    async def logon(self, session: TradingSession, *, api_key: str, timestamp_ms: int,
                    signed_timestamp: int | str, nonce: str, replay_key: str, signature: str,
                    cancel_on_disconnect: CancelOnDisconnect) -> ApiKeyInfo:
        """Authenticate, then make `session` a logged-on session of the key's account.

        An address with too many failed logons is refused (4001) without examining the
        logon; a full house of logged-on sessions answers 4002.
        """
        wait_s = self.throttle.blocked_for(session.peer)
        if wait_s > 0:
            self.metrics.logon_throttled.inc()
            raise RequestError(Code.RATE_LIMITED, "too many failed logons from this address",
                               max(1, math.ceil(wait_s * 1000)))
        try:
            info = await self.authenticate(
                api_key=api_key, timestamp_ms=timestamp_ms, signed_timestamp=signed_timestamp,
                nonce=nonce, replay_key=replay_key, signature=signature)
        except RequestError as exc:
            if exc.code == Code.BAD_CREDENTIALS:
                self.metrics.logon_failures.inc()
                self.throttle.failed(session.peer)
            raise
        self.throttle.succeeded(session.peer)
        if self.sessions.logged_on_count >= self.limits.max_connections:
            raise RequestError(Code.OVERLOADED, "too many sessions", 1000)
        if session.logged_on:  # a concurrent logon on the same connection won the race
            raise RequestError(Code.MALFORMED, "already logged on")
        self.bind(session, info, cancel_on_disconnect)
        return info

    def bind(self, session: TradingSession, info: ApiKeyInfo,
             cancel_on_disconnect: CancelOnDisconnect) -> None:
        """Make `session` a logged-on session of the key's account (after `authenticate`)."""
        session.account_id = info.account_id
        session.api_key = info.api_key
        session.permissions = tuple(info.permissions)
        session.cancel_on_disconnect = cancel_on_disconnect
        tier = self._pushed_tiers.get(info.api_key)
        orders_limit, requests_limit = (
            tier if tier is not None else (info.orders_limit, info.requests_limit))
        session.orders_bucket = self.order_buckets.get(info.api_key,
                                                       self._orders_spec(orders_limit))
        session.set_requests_limit(self._requests_spec(requests_limit))
        self.sessions.logged_on(session)
        self.link.add_account(info.account_id)
        if cancel_on_disconnect is not CancelOnDisconnect.NONE:
            self.link.session_opened(session.session_id, info.account_id,
                                     cancel_on_disconnect)
        if info.api_key in self._revoked:  # revoked while this logon was being checked
            session.close(KEY_REVOKED, POLICY_VIOLATION)

    # ---- revocation -----------------------------------------------------------------------

    def key_revoked(self, api_key: str) -> None:
        """The matcher journaled a RevokeApiKey: forget the key and close its sessions."""
        self._revoked.add(api_key)
        self.keys.drop(api_key)
        self.metrics.key_cache.set(len(self.keys))
        closed = 0
        for session in list(self.sessions.all):
            if session.api_key == api_key:
                session.close(KEY_REVOKED, POLICY_VIOLATION)
                closed += 1
        log.info("api_key_revoked", sessions_closed=closed)

    # ---- rate-limit tiers -----------------------------------------------------------------

    def _orders_spec(self, orders_limit: int) -> RateLimit:
        """A key's order bucket: its own limit per the gateway's window, or the default."""
        default = self.limits.orders
        if not orders_limit or orders_limit == default.limit:
            return default
        return RateLimit(type=default.type, limit=orders_limit, window_ms=default.window_ms)

    def _requests_spec(self, requests_limit: int) -> RateLimit:
        default = self.limits.requests
        if not requests_limit or requests_limit == default.limit:
            return default
        return RateLimit(type=default.type, limit=requests_limit, window_ms=default.window_ms)

    def key_limits_changed(self, changed: KeyLimitsChanged) -> None:
        """The matcher journaled a SetKeyLimits: the key's live sessions take the new limits
        now (the order bucket they share, each connection's request bucket), and its cached
        record, which still holds the old ones, is dropped."""
        self._apply_tier(changed.api_key, changed.orders_limit, changed.requests_limit)
        self.keys.drop(changed.api_key)
        self.metrics.key_cache.set(len(self.keys))
        log.info("api_key_limits_changed", orders_limit=changed.orders_limit,
                 requests_limit=changed.requests_limit)

    def _apply_tier(self, api_key: str, orders_limit: int, requests_limit: int) -> None:
        self._pushed_tiers.put(api_key, (orders_limit, requests_limit))
        bucket = self.order_buckets.find(api_key)
        if bucket is not None:
            bucket.resize(self._orders_spec(orders_limit))
        requests_spec = self._requests_spec(requests_limit)
        for session in self.sessions.all:
            if session.api_key == api_key:
                session.set_requests_limit(requests_spec)

    # ---- link state -----------------------------------------------------------------------

    def _link_state(self, up: bool) -> None:
        """Back from a link loss: a revocation or a tier change may have been missed
        meanwhile. Every cached key is fetched afresh, and the keys of open sessions are asked
        for again."""
        if not up:
            return
        self.keys.clear()
        # Pushed tiers may be older than changes made while the link was down; the keys of
        # open sessions get theirs again below, any other key at its next logon.
        self._pushed_tiers.clear()
        self.metrics.key_cache.set(0)
        keys = sorted(self.sessions.per_key)
        if keys:
            self.spawn(self._recheck_keys(keys))

    async def _recheck_keys(self, api_keys: list[str]) -> None:
        for api_key in api_keys:
            try:
                async with asyncio.timeout(self.limits.request_timeout_s):
                    answer = await self.link.ask_nowait(GetApiKey(api_key=api_key))
            except (TimeoutError, LinkDown, Overloaded, Unavailable):
                return  # the link is gone again: the next reconnect checks again
            if not isinstance(answer, ApiKeyInfo):
                self.key_revoked(api_key)
            else:
                self._apply_tier(api_key, answer.orders_limit, answer.requests_limit)

    async def authenticate(self, *, api_key: str, timestamp_ms: int,
                           signed_timestamp: int | str, nonce: str, replay_key: str,
                           signature: str) -> ApiKeyInfo:
        """Every logon check, WebSocket and FIX alike; any failure is the same 2002.

        `signed_timestamp` is the timestamp as it was signed (FIX signs SendingTime's text);
        `replay_key` is what may be used only once per key within the window.
        """
        if not auth.timestamp_fresh(timestamp_ms, auth.now_ms(), self.limits.logon_window_ms):
            raise RequestError(Code.BAD_CREDENTIALS)
        info = await self.key_info_or_none(api_key)
        # An unknown key is checked against a dummy secret: the same work either way.
        secret = info.secret if info is not None else None
        if (not auth.signature_ok(secret, signed_timestamp, nonce, api_key, signature)
                or info is None):
            raise RequestError(Code.BAD_CREDENTIALS)
        # Nonces are recorded only for good signatures: garbage cannot fill the cache.
        if not self.nonces.use(api_key, replay_key):
            raise RequestError(Code.BAD_CREDENTIALS)
        self.metrics.nonce_cache.set(len(self.nonces))
        if self.shared_nonces is not None:
            claimed = await self.shared_nonces.claim(api_key, replay_key)
            if claimed is False:  # replayed on another gateway process
                raise RequestError(Code.BAD_CREDENTIALS)
            if claimed is None:
                self.metrics.shared_nonce_unavailable.inc()
                log.warning("shared_nonce_check_skipped", reason="redis unavailable")
        if self.sessions.per_key.get(info.api_key, 0) >= self.limits.max_connections_per_key:
            raise RequestError(Code.RATE_LIMITED, "too many sessions for this key", 1000)
        return info

    async def key_info(self, api_key: str) -> ApiKeyInfo:
        """The key's account, secret and permissions (cached); 2002 for an unknown key."""
        info = await self.key_info_or_none(api_key)
        if info is None:
            raise RequestError(Code.BAD_CREDENTIALS)
        return info

    async def key_info_or_none(self, api_key: str) -> ApiKeyInfo | None:
        """The key's record, or None for an unknown key. Unknown keys are remembered a
        little while as known ones are, so probing them costs no matcher round trip more."""
        info = self.keys.get(api_key)
        if info is None:
            if self._unknown_keys.known_unknown(api_key):
                return None
            try:
                async with asyncio.timeout(self.limits.request_timeout_s):
                    answer = await self.link.ask_nowait(GetApiKey(api_key=api_key))
            except (TimeoutError, LinkDown):
                raise RequestError(Code.TIMEOUT, "no answer from the matcher") from None
            if not isinstance(answer, ApiKeyInfo):
                self._unknown_keys.add(api_key)
                return None
            info = answer
            self.keys.put(info)
            self.metrics.key_cache.set(len(self.keys))
        return info

    # ---- requests -------------------------------------------------------------------------

    @staticmethod
    def admit(session: TradingSession, permission: str, *, order: bool = False) -> None:
        """2003 unless the session's key has `permission` (TRADE or READ); for a new or
        changed order (`order`: place, amend) also one token of the key's order budget, or
        4001 with the wait. One call: it runs for every request."""
        if permission not in session.permissions:
            raise RequestError(Code.NO_PERMISSION, f"key lacks '{permission}' permission")
        if order:
            bucket = session.orders_bucket
            assert bucket is not None, "not logged on"
            wait = bucket.take()
            if wait:
                raise RequestError(Code.RATE_LIMITED, "order rate limit", wait)

    def submit(self, pending: Pending, command: Command, *, cancel: bool = False) -> None:
        """Send `command` (cancels in their own lane); `pending` is answered exactly once."""
        self._unanswered += 1  # `_settled` undoes it, as `pending` is answered
        self._deadlines.add(pending)
        try:
            self.link.submit_to(command, pending.finish, cancel=cancel)
        except (Overloaded, Unavailable) as exc:  # refused at once: nothing was sent
            pending.finish(exc)

    def ask(self, pending: Pending, query: Query) -> None:
        """Ask a read-only query; `pending` is answered exactly once."""
        self._unanswered += 1
        self._deadlines.add(pending)
        try:
            fut: asyncio.Future[QueryResult] = self.link.ask_nowait(query)
        except (Overloaded, Unavailable) as exc:
            pending.finish(exc)
            return
        fut.add_done_callback(pending.finish_future)

    def _settled(self) -> None:
        self._unanswered -= 1
        if not self._unanswered:
            self._idle.set()

    # ---- cancel-on-disconnect -------------------------------------------------------------

    def cancel_on_disconnect(self, session: TradingSession) -> None:
        """CancelAll through the journal (cancel lane) for a session that asked for it."""
        assert session.account_id is not None
        scope = (session.session_id
                 if session.cancel_on_disconnect is CancelOnDisconnect.SESSION else "")
        command = CancelAll(account_id=session.account_id, session_id=scope,
                            reason="disconnect")
        self.spawn(self._cancel_on_disconnect(session.session_id, command))

    async def _cancel_on_disconnect(self, session_id: str, command: CancelAll) -> None:
        try:
            ticket = None
            # The cancel lane is only full under extreme load: retry briefly rather than
            # give up, since the matcher is told the session is gone only afterwards.
            for _ in range(_COD_RETRIES):
                try:
                    ticket = self.link.submit(command, cancel=True)
                    break
                except Overloaded:
                    await asyncio.sleep(_COD_RETRY_S)
            if ticket is None:
                self.metrics.cancel_on_disconnect.labels("not_sent").inc()
                log.error("cancel_on_disconnect_not_sent", reason="cancel lane full")
                return
            result = await ticket
            self.metrics.cancel_on_disconnect.labels("ok").inc()
            count = next((e.count for e in getattr(result, "events", ())
                          if isinstance(e, AllCanceled)), None)
            log.info("cancel_on_disconnect", canceled=count)
        except (LinkDown, Unavailable) as exc:
            # The matcher saw the session (SessionOpened) and cancels itself on link loss.
            self.metrics.cancel_on_disconnect.labels("link_down").inc()
            log.warning("cancel_on_disconnect_by_matcher", error=repr(exc))
        finally:
            # Only now: until the CancelAll is through, a link loss still makes the
            # matcher cancel for this session.
            self.link.session_closed(session_id)
