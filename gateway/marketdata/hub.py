"""The gateway's market-data hub: symbols, subscriptions, feed callbacks, heartbeats.

One hub per gateway process. It subscribes the feed to a symbol when the first client wants
it and drops it when the last one leaves, fetches snapshots over the matcher link (retrying
with backoff while the link is down), and runs the once-a-second heartbeat.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import msgspec
import structlog

from exchange.marketdata.wire import decode_batch
from exchange.model.events import TradeExecuted
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import BookSnapshot, GetBook, GetTrades, TradeList
from gateway.frames import Flusher
from gateway.json_limits import TooDeep, check_depth
from gateway.marketdata import metrics
from gateway.marketdata.client import MdClient
from gateway.marketdata.feed import Feed, LinkFeed, RedisFeed
from gateway.marketdata.messages import (
    ErrorInfo,
    StatusOut,
    SubscriptionInfo,
    encode,
    request_decoder,
)
from gateway.marketdata.requests import Limits, RequestError, parse_subscribe, parse_symbols
from gateway.marketdata.source import MarketDataSource
from gateway.marketdata.symbol import SNAPSHOT_DEPTH, Subscription, SymbolFeed

log = structlog.get_logger("gateway.marketdata")

SNAPSHOT_TIMEOUT_S: Final = 5.0
FETCH_BACKOFF_MIN_S: Final = 0.05
FETCH_BACKOFF_MAX_S: Final = 2.0
HEARTBEAT_S: Final = 1.0
TRADES_BACKFILL_MAX: Final = 1000  # the matcher keeps the last 1,000 trades per symbol


class MdHub:
    def __init__(
        self,
        *,
        source: MarketDataSource,
        config: ExchangeConfig,
        redis_url: str | None,
        limits: Limits | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.limits = limits or Limits()
        self.symbols: dict[str, SymbolFeed] = {}
        self.clients: set[MdClient] = set()
        self.flusher = Flusher()
        self.feed: Feed = RedisFeed(redis_url, self) if redis_url else LinkFeed(source, self)
        self.started_at = time.monotonic()

    # ---- FeedSink ----------------------------------------------------------------------

    def on_payload(self, symbol: str, payload: bytes) -> None:
        feed = self.symbols.get(symbol)
        if feed is None:
            return  # a batch still in flight for a symbol nobody wants any more
        try:
            batch = decode_batch(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("md_bad_payload", symbol=symbol, error=str(exc))
            return
        try:
            feed.on_batch(batch)
        except Exception:
            # A bug must not kill the feed reader (every symbol would go dark) nor leave this
            # book half-applied: log it and start the symbol over from a snapshot.
            log.exception("md_batch_failed", symbol=symbol, seq=batch.seq)
            feed.start_resync("error")

    def on_active(self, symbol: str) -> None:
        feed = self.symbols.get(symbol)
        if feed is not None:
            feed.start_resync("subscribed" if feed.resyncs == 0 else "reconnect")

    def on_down(self) -> None:
        log.warning("md_feed_down", symbols=len(self.symbols))
        for feed in self.symbols.values():
            feed.on_feed_down()

    async def fetch_snapshot(self, symbol: str) -> BookSnapshot:
        backoff = FETCH_BACKOFF_MIN_S
        while True:
            try:
                async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
                    answer = await self.source.ask(GetBook(symbol=symbol, depth=SNAPSHOT_DEPTH))
                if isinstance(answer, BookSnapshot):
                    return answer
                log.error("md_snapshot_refused", symbol=symbol, answer=str(answer))
            except Exception as exc:
                # ConnectionError while the link is down, TimeoutError, the link's Overloaded
                # when its ask window is full... all retried: a symbol must not stay unready.
                log.warning("md_snapshot_failed", symbol=symbol, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, FETCH_BACKOFF_MAX_S)

    async def fetch_trades(self, symbol: str, count: int) -> list[TradeExecuted]:
        """One try at the trades a gap swallowed; [] if they cannot be had now.

        Asks for the most the matcher keeps, not `count`: more trades may have happened
        since the snapshot, and the answer is the newest ones. The caller picks its range.
        """
        if count > TRADES_BACKFILL_MAX:
            log.warning("md_trades_backfill_partial", symbol=symbol, missed=count)
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
                answer = await self.source.ask(
                    GetTrades(symbol=symbol, limit=TRADES_BACKFILL_MAX)
                )
        except Exception as exc:  # the snapshot matters more: go on without the trades
            log.warning("md_trades_backfill_failed", symbol=symbol, error=repr(exc))
            return []
        return answer.trades if isinstance(answer, TradeList) else []

    # ---- clients -----------------------------------------------------------------------

    def can_accept(self) -> bool:
        return len(self.clients) < self.limits.max_connections

    def add_client(self, client: MdClient) -> None:
        self.clients.add(client)
        metrics.CONNECTIONS.set(len(self.clients))

    def remove_client(self, client: MdClient) -> None:
        """Drop every subscription of a closed client (never called mid fan-out)."""
        for symbol in list(client.subscriptions):
            self._unsubscribe_one(client, symbol)
        self.clients.discard(client)
        metrics.CONNECTIONS.set(len(self.clients))

    def client_closed(self, client: MdClient) -> None:
        # Called from inside a fan-out loop (slow consumer): defer the removal.
        asyncio.get_running_loop().call_soon(self.remove_client, client)

    def _symbol(self, symbol: str) -> SymbolFeed:
        feed = self.symbols.get(symbol)
        if feed is None:
            feed = SymbolFeed(
                symbol, self.config.instruments[symbol], self.fetch_snapshot, self.fetch_trades
            )
            self.symbols[symbol] = feed
            self.feed.want(symbol)
        return feed

    def _unsubscribe_one(self, client: MdClient, symbol: str) -> None:
        client.subscriptions.pop(symbol, None)
        feed = self.symbols.get(symbol)
        if feed is None:
            return
        feed.remove(client)
        if not feed.subs:
            feed.close()
            del self.symbols[symbol]
            self.feed.unwant(symbol)

    # ---- requests ----------------------------------------------------------------------

    def handle(self, client: MdClient, raw: str | bytes) -> None:
        """One request from a subscriber; answers go out on the same socket."""
        req_id: int | str | None = None
        retry_after_ms: int | None = None
        try:
            wait_s = client.take_request_token(
                self.limits.request_burst, self.limits.requests_per_s
            )
            if wait_s > 0:
                metrics.REJECTED.labels("rate_limited").inc()
                retry_after_ms = max(1, int(wait_s * 1000))
                raise RequestError(4001, "rate limited: too many requests on this connection")
            if len(raw) > self.limits.max_request_bytes:
                limit = self.limits.max_request_bytes
                raise RequestError(1004, f"request larger than {limit} bytes")
            try:
                check_depth(raw)
                request = request_decoder.decode(raw)
            except TooDeep as exc:
                raise RequestError(1001, f"malformed request: {exc}") from None
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise RequestError(1001, f"malformed request: {exc}") from None
            req_id = request.id
            if request.method == "subscribe":
                self._subscribe(client, request.params, req_id)
            elif request.method == "unsubscribe":
                symbols = parse_symbols(request.params, self.config)
                for symbol in symbols:
                    self._unsubscribe_one(client, symbol)
                client.send(
                    encode(
                        StatusOut(
                            channel="status",
                            type="unsubscribed", symbol=None, ts=time.time_ns(), id=req_id,
                            symbols=symbols,
                        )
                    )
                )
            elif request.method == "resync":
                for symbol in parse_symbols(request.params, self.config):
                    feed = self.symbols.get(symbol)
                    if feed is None or symbol not in client.subscriptions:
                        raise RequestError(1002, f"not subscribed to {symbol}")
                    feed.resend_snapshot(client)
            else:
                raise RequestError(
                    1001, f"unknown method {request.method!r}: subscribe, unsubscribe, resync"
                )
        except RequestError as err:
            if retry_after_ms is None:
                metrics.REJECTED.labels("bad_request").inc()
            client.send(
                encode(
                    StatusOut(
                        channel="status",
                        type="error", symbol=None, ts=time.time_ns(), id=req_id,
                        error=ErrorInfo(
                            code=err.code, msg=err.msg, retry_after_ms=retry_after_ms
                        ),
                    )
                )
            )

    def _subscribe(
        self, client: MdClient, params: dict[str, object], req_id: int | str | None
    ) -> None:
        symbols, chans, depth, interval = parse_subscribe(params, self.config, self.limits)
        if len(set(client.subscriptions) | set(symbols)) > self.limits.max_symbols_per_connection:
            metrics.REJECTED.labels("too_many_subscriptions").inc()
            raise RequestError(
                1002,
                f"too many subscriptions: at most {self.limits.max_symbols_per_connection} "
                f"symbols per connection",
            )
        infos = [
            SubscriptionInfo(symbol=s, channels=sorted(chans), depth=depth, interval_ms=interval)
            for s in symbols
        ]
        # Acknowledge first, so the snapshot that follows is never ahead of the answer.
        client.send(
            encode(
                StatusOut(
                    channel="status",
                    type="subscribed", symbol=None, ts=time.time_ns(), id=req_id,
                    subscriptions=infos,
                )
            )
        )
        for symbol in symbols:
            sub = Subscription(symbol, chans, depth, interval)
            client.subscriptions[symbol] = sub
            self._symbol(symbol).add(client, sub)

    # ---- background --------------------------------------------------------------------

    async def heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += HEARTBEAT_S
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if not self.feed.connected:
                self.flowing()
                continue  # silence tells subscribers the feed is down
            ts = time.time_ns()
            now = time.monotonic()
            for feed in tuple(self.symbols.values()):
                feed.check_silence(now, self.limits.feed_silence_s)
                feed.heartbeat(ts)
            self.flowing()

    def flowing(self) -> str | None:
        """None while market data flows, else why not (also the md_flowing gauge).

        Not flowing: the feed is disconnected, or a subscribed symbol's book is stale (its
        publisher went silent for longer than the silence limit).
        """
        why: str | None = None
        if not self.feed.connected:
            why = f"market-data feed ({self.feed.name}) disconnected"
        else:
            stale = [symbol for symbol, feed in sorted(self.symbols.items()) if feed.stale]
            if stale:
                why = f"no market data for {', '.join(stale)}: the publisher went silent"
        metrics.FLOWING.set(0 if why else 1)
        return why

    def close(self) -> None:
        for feed in self.symbols.values():
            feed.close()

    def health(self) -> dict[str, object]:
        now = time.monotonic()
        not_flowing = self.flowing()
        return {
            "flowing": not_flowing is None,
            **({"reason": not_flowing} if not_flowing else {}),
            "feed": self.feed.name,
            "feed_connected": self.feed.connected,
            "connections": len(self.clients),
            "symbols": {
                symbol: {
                    "ready": feed.ready,
                    "seq": feed.seq,
                    "last_trade_id": feed.last_trade_id,
                    "subscribers": len(feed.subs),
                    "views": len(feed.groups),
                    "resyncs": feed.resyncs,
                    "gaps": feed.gaps,
                    "last_batch_age_s": (
                        round(now - feed.last_batch_at, 3) if feed.last_batch_at else None
                    ),
                }
                for symbol, feed in sorted(self.symbols.items())
            },
        }
