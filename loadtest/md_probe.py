"""A market-data subscriber that measures publish→receive latency and checks the books.

Latency is wall-clock receive time minus the message's `ts` (engine time, same machine).
For each symbol it rebuilds the book from snapshot + updates, checks `prev_seq` continuity
and the CRC32 checksum, and asks for a resync after any gap or mismatch (each one reported).
The connection is the lean `loadtest.ws` client: each message is handled in the protocol's
`data_received` callback (aiohttp's receive loop cost as much as the checks themselves).
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from loadtest import wire
from loadtest.book import LocalBook
from loadtest.checks import (
    BOOK_CHECKSUM,
    BOOK_SEQ_GAP,
    MD_CLOSED,
    MD_SLOW_CONSUMER,
    UNDECODABLE,
    Violations,
)
from loadtest.recorder import Recorder
from loadtest.ws import WsClient

DEPTH = 50


class BookChecker:
    """Feed-side checks for one subscription, independent of the socket (unit-testable)."""

    def __init__(self, name: str, violations: Violations) -> None:
        self.name = name
        self.v = violations
        self.books: dict[str, LocalBook] = {}
        self.need_resync: set[str] = set()
        self.messages = 0
        self.checksums_ok = 0

    def on_message(self, msg: wire.BookMessage) -> None:
        """Apply one message; afterwards `need_resync` holds the symbols to resync."""
        self.messages += 1
        symbol = msg.symbol or ""
        if msg.channel == "status":
            if msg.type == "resync_required":
                self.books.pop(symbol, None)
            elif msg.type == "slow_consumer":
                self.v.add(MD_SLOW_CONSUMER, f"{self.name}: closed as a slow consumer")
            return
        if msg.channel != "book":
            return
        book = self.books.get(symbol)
        if msg.type == "snapshot":
            book = self.books[symbol] = LocalBook()
            self.need_resync.discard(symbol)
        elif book is None:
            return  # updates before the first snapshot (or while resyncing) are not ours
        elif msg.prev_seq != book.seq:
            self.v.add(
                BOOK_SEQ_GAP, f"{self.name} {symbol}: prev_seq {msg.prev_seq} after {book.seq}"
            )
            self._resync(symbol)
            return
        book.apply(msg.bids or [], msg.asks or [], snapshot=msg.type == "snapshot")
        book.seq = msg.seq
        if msg.checksum is not None:
            mine = book.checksum()
            if mine != msg.checksum:
                self.v.add(
                    BOOK_CHECKSUM,
                    f"{self.name} {symbol} seq {msg.seq}: checksum {msg.checksum} != {mine}",
                )
                self._resync(symbol)
            else:
                self.checksums_ok += 1

    def _resync(self, symbol: str) -> None:
        self.books.pop(symbol, None)
        self.need_resync.add(symbol)


async def run_probe(
    url: str,
    symbols: list[str],
    recorder: Recorder,
    checker: BookChecker,
    until_ns: int,
) -> None:
    """Subscribe and read until monotonic time `until_ns` (or the server closes)."""
    conn: WsClient | None = None

    def on_message(payload: bytes, _recv_ns: int) -> None:
        try:
            msg = wire.md_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            checker.v.add(UNDECODABLE, f"{checker.name}: {exc}: {payload[:120]!r}")
            return
        if msg.ts is not None and msg.channel in ("book", "trades") and msg.type != "snapshot":
            recorder.on_md((time.time_ns() - msg.ts) // 1000)
        checker.on_message(msg)
        if checker.need_resync and conn is not None:
            wanted = sorted(checker.need_resync)
            checker.need_resync.clear()
            conn.send(wire.encoder.encode({"method": "resync", "params": {"symbols": wanted}}))

    ws_url = url.replace("http://", "ws://", 1) + "/ws/md"
    conn = await WsClient.connect(ws_url, on_message)
    try:
        sub = {"channels": ["book", "trades"], "symbols": symbols, "depth": DEPTH}
        conn.send(wire.encoder.encode({"method": "subscribe", "params": sub}))
        left = (until_ns - time.monotonic_ns()) / 1e9
        done, _ = await asyncio.wait([conn.closed], timeout=max(left, 0.0))
        if done:
            # The server hung up on a subscriber that was keeping up: that is a fault.
            checker.v.add(MD_CLOSED, f"{checker.name}: closed by the server (close code "
                          f"{conn.close_code}) after {checker.messages} messages")
    finally:
        await conn.close()
