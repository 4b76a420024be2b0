"""The benchmark's direct mode: publisher -> Redis -> gateway, with no matcher in between.

The bench process runs a real Engine and the real publisher (`make_port` with Redis) and
applies one command per batch at the asked rate, so the gateway sees exactly that many book
updates per second, each stamped with the wall clock when it was published. The gateway runs
in its own process (`python -m bench.marketdata_direct --serve ...`) with the real
`install()`; its snapshot source reads the publisher's latest book from a Redis key instead
of asking a matcher (any snapshot taken at a batch boundary is consistent with the feed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from exchange.model.codes import Code
from exchange.model.commands import CancelOrder, Command, CreateAccount, Deposit, PlaceOrder
from exchange.model.events import OrderAccepted
from exchange.model.instruments import load_config
from exchange.model.queries import (
    BookSnapshot,
    GetBook,
    GetTrades,
    NotFound,
    Query,
    QueryResult,
    TradeList,
)
from gateway.marketdata.source import LinkStateHandler, MarketDataHandler
from loadtest.cluster import free_port

SNAPSHOT_KEY: Final = "mdbench:snapshot:"
STARTUP_S: Final = 20.0

_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(BookSnapshot)


class RedisSnapshotSource:
    """MarketDataSource for the benchmark gateway: snapshots from a Redis key."""

    def __init__(self, url: str) -> None:
        self._client = aioredis.Redis.from_url(url)

    async def ask(self, query: Query) -> QueryResult:
        if isinstance(query, GetBook):
            data = await self._client.get(SNAPSHOT_KEY + query.symbol)
            if data is None:
                return BookSnapshot(symbol=query.symbol, book_seq=0, last_trade_id=0, bids=[],
                                    asks=[])
            return _snapshot_decoder.decode(data.encode() if isinstance(data, str) else data)
        if isinstance(query, GetTrades):
            return TradeList(trades=[])
        return NotFound(code=int(Code.UNKNOWN_SYMBOL))

    def md_subscribe(self, symbols: list[str]) -> None:
        return None

    def md_unsubscribe(self, symbols: list[str]) -> None:
        return None

    def set_market_data_handler(self, handler: MarketDataHandler) -> None:
        return None

    def set_link_state_handler(self, handler: LinkStateHandler) -> None:
        return None


def serve(redis_url: str, port: int) -> None:
    """The benchmark gateway process: /ws/md only, fed from Redis."""
    from exchange.logs import configure_logging
    from gateway.marketdata import install

    configure_logging("md-bench-gateway", "warning")
    app = web.Application()
    install(app, source=RedisSnapshotSource(redis_url), config=load_config(),
            redis_url=redis_url)
    import uvloop

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start in {STARTUP_S:g}s")


class Direct:
    """redis-server + benchmark gateway subprocesses; the publisher runs in this process."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="md-bench-direct-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis_url = ""
        self.url = ""

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def start(self) -> Direct:
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise RuntimeError("direct mode needs the redis-server binary")
        rport = free_port()
        self.procs["redis"] = proc = subprocess.Popen(
            [redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_tcp(rport, proc, "redis-server")
        self.redis_url = f"redis://127.0.0.1:{rport}/0"
        gport = free_port()
        log = (self.workdir / "gateway.log").open("wb")
        self.procs["gateway"] = proc = subprocess.Popen(
            [sys.executable, "-m", "bench.marketdata_direct", "--serve",
             "--redis", self.redis_url, "--port", str(gport)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        _wait_tcp(gport, proc, "benchmark gateway")
        self.url = f"http://127.0.0.1:{gport}"
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()

    async def drive(
        self, symbol: str, rate: float, stop: asyncio.Event, counters: dict[str, int]
    ) -> None:
        """One command per published batch, at `rate` per second, open loop."""
        from exchange.engine.core import Engine
        from exchange.marketdata.publish import make_port

        config = load_config()
        engine = Engine(config)
        seq = 0

        def apply(command: Command, ts: int) -> list[object]:
            nonlocal seq
            seq += 1
            return list(engine.apply(command, seq, ts))

        apply(CreateAccount(label="md-bench"), time.time_ns())
        for asset, amount in (("USD", 10**15), ("BTC", 10**13)):
            apply(Deposit(account_id=1, asset=asset, amount=amount), time.time_ns())
        port = make_port(self.redis_url, lambda s, p: None)
        await port.start()
        snapshots = aioredis.Redis.from_url(self.redis_url)
        setting: asyncio.Task[None] | None = None

        async def put(key: str, value: bytes) -> None:
            await snapshots.set(key, value)

        rng = random.Random(1)
        ref = config.instruments[symbol].reference_ticks
        resting: list[int] = []
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not stop.is_set():
                now = loop.time()
                if now < next_at:
                    await asyncio.sleep(next_at - now)
                next_at += 1.0 / rate
                command: Command
                if len(resting) > 400 or (len(resting) > 200 and rng.random() < 0.5):
                    oid = resting.pop(rng.randrange(len(resting)))
                    command = CancelOrder(account_id=1, symbol=symbol, order_id=oid)
                else:
                    buy = rng.random() < 0.5
                    offset = rng.randint(1, 200)
                    command = PlaceOrder(
                        account_id=1, symbol=symbol, side="buy" if buy else "sell",
                        order_type="limit", qty=rng.randint(1, 100),
                        price=ref - offset if buy else ref + offset,
                        client_order_id=f"d{seq}",
                    )
                ts = time.time_ns()
                events = apply(command, ts)
                first = events[0] if events else None
                if isinstance(first, OrderAccepted) and first.leaves_qty > 0:
                    resting.append(first.order_id)
                port.on_batch(events, ts)  # type: ignore[arg-type]
                counters["sent"] += 1
                if setting is None or setting.done():
                    # The latest book for gateways that (re)start: one write in flight at most.
                    snap = engine.answer(GetBook(symbol=symbol, depth=1000))
                    setting = asyncio.create_task(
                        put(SNAPSHOT_KEY + symbol, _snapshot_encoder.encode(snap))
                    )
        finally:
            if setting is not None:
                with contextlib.suppress(Exception):
                    await setting
            await port.stop()
            await snapshots.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.marketdata_direct")
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.redis, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
