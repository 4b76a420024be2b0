"""A deadline and a bound for connections that have not sent a whole request yet.

aiohttp waits for a request's headers as long as the client keeps the connection open (a
client sending one header byte a second holds a socket for minutes), and such connections
count toward no limit: a few hundred of them exhaust the gateway's file descriptors. The
guard closes a connection whose first request's headers are not complete within
`header_timeout_s`, and aborts new connections at once while `max_pending` connections are
already waiting for theirs. Both are counted (gateway_http_connections_closed{reason}); the
number waiting is gateway_http_pending_connections.

A WebSocket is a request like any other here: once its upgrade request has arrived, the
trading session's own logon and idle deadlines take over.

aiohttp's RequestHandler has __slots__ and no hook for this; the guard makes its handlers a
subclass (same layout, no new slots) that reports connection_made/connection_lost and its
first parsed request (the handler's request count; aiohttp is pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import structlog
from aiohttp.web_protocol import RequestHandler

from gateway.metrics import GatewayMetrics

log = structlog.get_logger("gateway.http_guard")

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_PENDING = 512


class HttpGuard:
    def __init__(self, metrics: GatewayMetrics, *, header_timeout_s: float =
                 DEFAULT_HEADER_TIMEOUT_S, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_pending = max_pending
        self.metrics = metrics
        self._pending: dict[RequestHandler, asyncio.TimerHandle] = {}
        guard = self

        class GuardedHandler(RequestHandler):
            __slots__ = ()

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                guard._opened(self, cast(asyncio.Transport, transport))

            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                # The first request's headers are in: no deadline any more. (The class stays:
                # uvloop keeps the bound data_received it found at connection time.)
                if self._request_count and self in guard._pending:
                    guard._forget(self)

            def connection_lost(self, exc: BaseException | None) -> None:
                guard._forget(self)
                super().connection_lost(exc)

        self._handler_class = GuardedHandler

    @property
    def pending(self) -> int:
        return len(self._pending)

    def factory(self, make_handler: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap an aiohttp protocol factory (`AppRunner.server`)."""

        def make() -> Any:
            handler = make_handler()
            handler.__class__ = self._handler_class
            return handler

        return make

    def _opened(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if len(self._pending) >= self.max_pending:
            self.metrics.http_refused.labels("too_many_pending").inc()
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        self._pending[handler] = loop.call_later(self.header_timeout_s, self._deadline,
                                                 handler, transport)
        self.metrics.http_pending.set(len(self._pending))

    def _deadline(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self._pending.pop(handler, None)
        self.metrics.http_pending.set(len(self._pending))
        # _request_count counts requests whose headers were parsed on this connection.
        if handler._request_count == 0 and not transport.is_closing():
            self.metrics.http_refused.labels("header_timeout").inc()
            peer = transport.get_extra_info("peername")
            log.info("http_header_timeout", peer=str(peer), seconds=self.header_timeout_s)
            transport.abort()

    def _forget(self, handler: RequestHandler) -> None:
        timer = self._pending.pop(handler, None)
        if timer is not None:
            timer.cancel()
            self.metrics.http_pending.set(len(self._pending))

    def close(self) -> None:
        for timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
