"""Shared pieces of the market-data tests, and tests of those pieces.

- `Flow`: a real Engine driven by a seeded random command stream, in matcher-like batches,
  feeding a MarketDataPort; it records the engine's book at every book_seq.
- `EngineSource`: a MarketDataSource backed by that engine (the gateway's view of the link);
  it can drop payloads to inject gaps.
- `BookReplica`: a subscriber's book rebuilt from snapshot + updates, checking prev_seq
  chaining and every checksum, and comparing with the engine's book at each seq.
- `MdWs`: a /ws/md test client that feeds a BookReplica as messages arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import msgspec
import pytest

from exchange.engine.core import Engine
from exchange.marketdata.port import MarketDataPort
from exchange.model.commands import CancelOrder, Command, CreateAccount, Deposit, PlaceOrder
from exchange.model.events import Event, OrderAccepted
from exchange.model.instruments import ExchangeConfig, Instrument, load_config
from exchange.model.queries import BookSnapshot, GetBook, Query, QueryResult
from gateway.marketdata.source import LinkStateHandler, MarketDataHandler

SYMBOL = "BTC-USD"
DEPTH_ALL = 1000


class Flow:
    """Seeded random order flow on one symbol through a real Engine."""

    def __init__(self, seed: int, port: MarketDataPort | None, config: ExchangeConfig) -> None:
        self.rng = random.Random(seed)
        self.engine = Engine(config)
        self.port = port
        self.inst = config.instruments[SYMBOL]
        self.seq = 0
        self.ts = 1_700_000_000_000_000_000
        self.books: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
        self.last_trade_id = 0
        self.open: list[tuple[int, int]] = []  # (account, order_id)
        self.coid = 0
        self.accounts: list[int] = []
        self.book_batches = 0  # matcher batches that changed the book: one update each
        setup: list[Command] = []
        for _ in range(4):
            setup.append(CreateAccount(label="mm"))
        for acct in range(1, 5):
            setup.append(Deposit(account_id=acct, asset="USD", amount=10**15))
            setup.append(Deposit(account_id=acct, asset="BTC", amount=10**13))
        self.accounts = [1, 2, 3, 4]
        self.batch(setup)
        self._record()

    record = True  # tests that build a large book first may switch recording off

    def _record(self) -> None:
        if not self.record:
            return
        snap = self.engine.answer(GetBook(symbol=SYMBOL, depth=DEPTH_ALL))
        assert isinstance(snap, BookSnapshot)
        self.books[snap.book_seq] = (snap.bids, snap.asks)
        self.last_trade_id = snap.last_trade_id

    def command(self) -> Command:
        rng = self.rng
        ref = self.inst.reference_ticks
        roll = rng.random()
        acct = rng.choice(self.accounts)
        if roll < 0.35 and self.open:
            acct, oid = self.open.pop(rng.randrange(len(self.open)))
            return CancelOrder(account_id=acct, symbol=SYMBOL, order_id=oid)
        self.coid += 1
        side = rng.choice(("buy", "sell"))
        if roll < 0.42:
            return PlaceOrder(
                account_id=acct, symbol=SYMBOL, side=side, order_type="market",
                qty=rng.randint(1, 30), tif="IOC", client_order_id=f"c{self.coid}",
            )
        # Limit orders around the reference: mostly resting, some crossing.
        offset = rng.randint(-3, 40)
        price = ref - offset if side == "buy" else ref + offset
        return PlaceOrder(
            account_id=acct, symbol=SYMBOL, side=side, order_type="limit",
            qty=rng.randint(1, 50), price=price, client_order_id=f"c{self.coid}",
        )

    def batch(self, commands: Sequence[Command]) -> None:
        events: list[Event] = []
        before = max(self.books, default=0)
        for command in commands:
            self.seq += 1
            self.ts += self.rng.randint(1, 5_000_000)
            out = self.engine.apply(command, self.seq, self.ts)
            for ev in out:
                if isinstance(ev, OrderAccepted) and ev.leaves_qty > 0:
                    self.open.append((ev.account_id, ev.order_id))
            events.extend(out)
            # Record the book after every command: every book_seq the feed can carry.
            self._record()
        if self.books and max(self.books) != before:
            self.book_batches += 1
        if self.port is not None:
            self.port.on_batch(events, self.ts)

    def step(self, max_batch: int = 5) -> None:
        n = self.rng.randint(1, max_batch)
        self.batch([self.command() for _ in range(n)])

    def tick(self) -> None:
        if self.port is not None:
            self.port.on_tick(self.ts)


class EngineSource:
    """MarketDataSource over an in-process engine; payloads delivered on the next loop turn."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.subscribed: set[str] = set()
        self.handler: MarketDataHandler | None = None
        self.state_handler: LinkStateHandler | None = None
        self.drop: Callable[[str, bytes], bool] = lambda symbol, payload: False
        self.up = True
        self.asks = 0

    async def ask(self, query: Query) -> QueryResult:
        if not self.up:
            raise ConnectionError("link down")
        self.asks += 1
        await asyncio.sleep(0)
        return self.engine.answer(query)

    def md_subscribe(self, symbols: list[str]) -> None:
        self.subscribed.update(symbols)

    def md_unsubscribe(self, symbols: list[str]) -> None:
        self.subscribed.difference_update(symbols)

    def set_market_data_handler(self, handler: MarketDataHandler) -> None:
        self.handler = handler

    def set_link_state_handler(self, handler: LinkStateHandler) -> None:
        self.state_handler = handler

    def send_to_gateways(self, symbol: str, payload: bytes) -> None:
        """What the link transport calls (the matcher side of the link)."""
        live = symbol in self.subscribed and self.up and self.handler is not None
        if live and not self.drop(symbol, payload):
            assert self.handler is not None
            self.handler(symbol, payload)


def kraken_string(text: str) -> str:
    return text.replace(".", "").lstrip("0")


class BookReplica:
    """A subscriber's book from /ws/md messages, checked at every message."""

    def __init__(
        self,
        inst: Instrument,
        depth: int,
        expected: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] | None,
    ) -> None:
        self.inst = inst
        self.depth = depth
        self.expected = expected
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq: int | None = None
        self.snapshots = 0
        self.updates = 0
        self.resyncs = 0
        self.checked = 0
        self.trade_ids: list[int] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.check_ticker = False  # unconflated book: a ticker must match the book held
        self.tickers = 0

    def _sorted(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        p = self.inst.price_to_ticks
        bids = sorted(self.bids.items(), key=lambda kv: -(p(kv[0]) or 0))
        asks = sorted(self.asks.items(), key=lambda kv: p(kv[0]) or 0)
        return bids, asks

    def checksum(self) -> int:
        bids, asks = self._sorted()
        text = "".join(kraken_string(p) + kraken_string(q) for p, q in asks[:10])
        text += "".join(kraken_string(p) + kraken_string(q) for p, q in bids[:10])
        return zlib.crc32(text.encode())

    def on_message(self, msg: dict[str, Any]) -> None:
        channel = msg["channel"]
        assert "symbol" in msg and "ts" in msg, msg
        if channel == "status":
            if msg["type"] == "resync_required":
                self.resyncs += 1
                self.seq = None
            return
        if channel == "trades":
            self.trade_ids.append(msg["trade_id"])
            return
        if channel == "heartbeat":
            self.heartbeats.append(msg)
            if self.seq is not None:
                assert msg["seq"] == self.seq, (msg, self.seq)
            return
        if channel == "ticker":
            self.tickers += 1
            if self.check_ticker and self.seq is not None:
                bids, asks = self._sorted()
                assert (msg["best_bid"], msg["best_bid_qty"]) == (bids[0] if bids else (None, None))
                assert (msg["best_ask"], msg["best_ask_qty"]) == (asks[0] if asks else (None, None))
            return
        if channel != "book":
            return
        if msg["type"] == "snapshot":
            assert msg["prev_seq"] is None
            self.bids = dict(msg["bids"])
            self.asks = dict(msg["asks"])
            self.snapshots += 1
        else:
            assert self.seq is not None, "update before snapshot"
            assert msg["prev_seq"] == self.seq, (msg["prev_seq"], self.seq)
            for side, book in (("bids", self.bids), ("asks", self.asks)):
                for price, qty in msg[side]:
                    if qty == "0":
                        assert price in book, f"delete of absent level {price}"
                        del book[price]
                    else:
                        book[price] = qty
            self.updates += 1
        self.seq = msg["seq"]
        assert len(self.bids) <= self.depth and len(self.asks) <= self.depth
        assert self.checksum() == msg["checksum"], "checksum mismatch"
        if self.expected is not None:
            self.compare(msg["seq"])

    def compare(self, seq: int) -> None:
        assert self.expected is not None
        bids, asks = self.expected[seq]
        inst = self.inst
        want_bids = {inst.ticks_to_price(p): inst.lots_to_qty(q) for p, q in bids[: self.depth]}
        want_asks = {inst.ticks_to_price(p): inst.lots_to_qty(q) for p, q in asks[: self.depth]}
        assert self.bids == want_bids, f"bids differ at seq {seq}"
        assert self.asks == want_asks, f"asks differ at seq {seq}"
        self.checked += 1


class MdWs:
    """A /ws/md subscriber that keeps reading into a BookReplica in a background task."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, replica: BookReplica) -> None:
        self.ws = ws
        self.replica = replica
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.closed = asyncio.Event()
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = msgspec.json.decode(msg.data)
                self.messages.append(data)
                self.replica.on_message(data)
                self.changed.set()
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            self.closed.set()
            self.changed.set()

    async def wait_for(self, cond: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not cond():
            if self.error is not None:
                raise self.error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not reached")
            self.changed.clear()
            if cond():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


@pytest.fixture
def config() -> ExchangeConfig:
    return load_config()


# ---- tests of the helpers themselves ----------------------------------------------------


def test_flow_records_every_book_seq(config: ExchangeConfig) -> None:
    flow = Flow(1, None, config)
    for _ in range(200):
        flow.step()
    seqs = sorted(flow.books)
    assert seqs[-1] > 100
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "book_seq is contiguous"
    assert flow.last_trade_id > 0, "the flow trades"


def test_replica_rejects_a_wrong_checksum(config: ExchangeConfig) -> None:
    replica = BookReplica(config.instruments[SYMBOL], 10, None)
    msg = {
        "channel": "book", "type": "snapshot", "symbol": SYMBOL, "ts": 1, "seq": 1,
        "prev_seq": None, "bids": [["1.00", "0.0001"]], "asks": [], "checksum": 1,
    }
    with pytest.raises(AssertionError, match="checksum"):
        replica.on_message(msg)
