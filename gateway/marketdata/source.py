"""The seam between the gateway's matcher link and its market-data fan-out.

The gateway's link wrapper implements `MarketDataSource`; `gateway.marketdata` consumes it.
Over the link come snapshots (`ask(GetBook(...))`) and, when no Redis is configured, the
per-symbol market-data batches themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from exchange.model.queries import Query, QueryResult

MarketDataHandler = Callable[[str, bytes], None]  # (symbol, payload of one batch)
LinkStateHandler = Callable[[bool], None]  # True once (re)connected, False on loss


class MarketDataSource(Protocol):
    async def ask(self, query: Query) -> QueryResult:
        """A read-only query to the matcher; raises ConnectionError while the link is down."""

    def md_subscribe(self, symbols: list[str]) -> None:
        """Ask the matcher to send these symbols' batches over the link (kept across reconnects)."""

    def md_unsubscribe(self, symbols: list[str]) -> None: ...

    def set_market_data_handler(self, handler: MarketDataHandler) -> None: ...

    def set_link_state_handler(self, handler: LinkStateHandler) -> None: ...
