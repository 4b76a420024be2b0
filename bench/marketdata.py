"""Market-data fan-out benchmark.

    python -m bench.marketdata --subscribers N --rate R [--interval-ms M]

Starts a whole exchange on this machine (loadtest.cluster: a private redis-server, a matcher
with the real engine and fsync, one gateway), drives book updates at R per second straight
into the matcher over a link connection (open loop: limit orders resting away from the touch
and cancels of them, so every command changes one level), and has N WebSocket subscribers
on one symbol read /ws/md. Latency is publish -> receive: the message's `ts` (stamped by the
engine when the matcher sequenced the batch) to the moment the subscriber process read it.
The path measured is: matcher -> journal fsync -> Redis pub/sub -> gateway -> N sockets.

Subscribers are raw asyncio protocols (handshake, frame parsing, no JSON decoding but for
the ts), so the client side spends as little of the shared CPU as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import platform
import random
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Final

from exchange.model.commands import CancelOrder, PlaceOrder
from exchange.model.instruments import load_config

SYMBOL: Final = "BTC-USD"
UPDATE_PREFIX: Final = b'{"channel":"book","type":"update"'
TS_KEY: Final = b'"ts":'
SEQ_KEY: Final = b'"seq":'


class Stats:
    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.arrivals: list[tuple[int, int]] = []  # (book seq, receive time ns) of updates
        self.at_redis: dict[int, int] = {}  # book seq -> when the bench's own Redis sub got it
        self.match_seqs = True  # record (seq, time) of updates, to match them with at_redis
        self.frames = 0
        self.updates = 0
        self.recording = False
        self.closed = 0
        self.slow = 0


class Subscriber(asyncio.Protocol):
    """A minimal /ws/md client: upgrade, subscribe, count frames, time book updates."""

    def __init__(self, stats: Stats, request: bytes, host: str, ready: asyncio.Future[None]):
        self.stats = stats
        self.request = request
        self.host = host
        self.ready = ready
        self.transport: asyncio.BaseTransport | None = None
        self.buf = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET /ws/md HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {buf[:200]!r}")
            self.upgraded = True
            buf = buf[end + 4 :]
            assert self.transport is not None
            self.transport.write(masked_text_frame(self.request))  # type: ignore[attr-defined]
        stats = self.stats
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = struct.unpack_from("!H", buf, pos + 2)[0]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                start = pos + 10
            end = start + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                stats.frames += stats.recording
                if buf.startswith(UPDATE_PREFIX, start):
                    if stats.recording:
                        stats.updates += 1
                        i = buf.index(TS_KEY, start) + 5
                        j = buf.index(b",", i)
                        stats.latencies_us.append((now - int(buf[i:j])) // 1000)
                        if stats.match_seqs:
                            k = buf.index(SEQ_KEY, j) + 6
                            stats.arrivals.append((int(buf[k : buf.index(b",", k)]), now))
                elif not self.ready.done() and buf.find(b'"type":"snapshot"', start, end) > 0:
                    self.ready.set_result(None)
                elif buf.find(b"slow_consumer", start, end) > 0:
                    stats.slow += 1
            pos = end
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the snapshot"))


async def _subscribers(conn: Connection, host: str, port: int, request: bytes, n: int) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    transports: list[asyncio.BaseTransport] = []
    readies: list[asyncio.Future[None]] = []
    for i in range(n):
        ready: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda ready=ready: Subscriber(stats, request, host, ready),  # type: ignore[misc]
            host, port,
        )
        transports.append(transport)
        readies.append(ready)
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # spread the handshakes a little
    await asyncio.wait_for(asyncio.gather(*readies), 60)
    conn.send("ready")
    await asyncio.to_thread(conn.recv)  # "record"
    stats.recording = True
    await asyncio.to_thread(conn.recv)  # "stop"
    stats.recording = False
    conn.send((stats.latencies_us, stats.arrivals, stats.frames, stats.updates, stats.slow,
               stats.closed))
    for conn_transport in transports:
        conn_transport.close()


def subscriber_process(conn: Connection, host: str, port: int, request: bytes, n: int) -> None:
    """A child process holding `n` subscribers (the client side gets its own CPU)."""
    import uvloop

    uvloop.run(_subscribers(conn, host, port, request, n))


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    header = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return header + mask + masked


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[idx] / 1000.0


async def drive(
    matcher: str,
    rate: float,
    stop: asyncio.Event,
    counters: dict[str, int],
    first_error: list[str],
) -> None:
    """Open-loop book updates at `rate`/s through a direct matcher link."""
    from exchange.link.client import LinkClient
    from gateway.client import create_funded_account_via_link

    inst = load_config().instruments[SYMBOL]
    creds = await create_funded_account_via_link(
        matcher, {"USD": "100000000", "BTC": "100000"}, label="md-bench"
    )
    link = await LinkClient.connect(matcher, "md-bench-driver")
    rng = random.Random(1)
    resting: list[int] = []
    ref = inst.reference_ticks
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    next_at = loop.time()
    coid = 0

    def done(fut: asyncio.Future[object]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            if stop.is_set():
                return  # in flight when the driver's link was closed at the end
            counters["errors"] += 1
            if not first_error:
                first_error.append(repr(fut.exception()) if not fut.cancelled() else "cancelled")
            return
        result = fut.result()
        events = getattr(result, "events", None)
        if events:
            first = events[0]
            if type(first).__name__ == "OrderAccepted" and first.leaves_qty > 0:
                resting.append(first.order_id)
        else:
            counters["refused"] += 1

    try:
        while not stop.is_set():
            now = loop.time()
            if now < next_at:
                await asyncio.sleep(next_at - now)
            next_at += interval
            # Keep about 400 resting orders: cancel when above, place when below.
            if len(resting) > 400 or (len(resting) > 200 and rng.random() < 0.5):
                oid = resting.pop(rng.randrange(len(resting)))
                command: PlaceOrder | CancelOrder = CancelOrder(
                    account_id=creds.account_id, symbol=SYMBOL, order_id=oid
                )
            else:
                coid += 1
                buy = rng.random() < 0.5
                offset = rng.randint(1, 200)
                command = PlaceOrder(
                    account_id=creds.account_id, symbol=SYMBOL, side="buy" if buy else "sell",
                    order_type="limit", qty=rng.randint(1, 100),
                    price=ref - offset if buy else ref + offset,
                    client_order_id=f"b{coid}",
                )
            fut = link.submit_nowait(command)
            fut.add_done_callback(done)  # type: ignore[arg-type]
            counters["sent"] += 1
    finally:
        await link.close()


async def watch_redis(url: str, stats: Stats, upstream_us: list[int]) -> None:
    """Time engine ts -> Redis subscriber: the part of the latency before the gateway."""
    import redis.asyncio as aioredis

    from exchange.marketdata.wire import channel_of, decode_batch

    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel_of(SYMBOL))
    try:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None and stats.recording:
                batch = decode_batch(msg["data"])
                if batch.book is not None:
                    now = time.time_ns()
                    upstream_us.append((now - batch.ts) // 1000)
                    stats.at_redis[batch.seq] = now
    finally:
        await pubsub.aclose()
        await client.aclose()


async def run(args: argparse.Namespace) -> int:
    from bench.marketdata_direct import Direct
    from loadtest.cluster import Cluster, process_cpu_seconds

    cluster: Cluster | Direct
    if args.mode == "direct":
        cluster = Direct()
        path = "publisher (real engine, no journal) -> redis -> gateway /ws/md"
    else:
        workdir = Path(tempfile.mkdtemp(prefix="md-bench-"))
        cluster = Cluster(workdir, fsync=args.fsync, redis=not args.no_redis)
        via = "link" if args.no_redis else "redis"
        path = f"order link -> matcher (real engine, fsync {args.fsync}) -> {via} -> gateway /ws/md"
    await asyncio.to_thread(cluster.start)
    try:
        print(
            f"path: {path} -> {args.subscribers} subscribers; "
            f"machine: {platform.node()} {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; pids {cluster.pids}",
            flush=True,
        )
        host, port = cluster.url.removeprefix("http://").split(":")
        params = f'"channels":["book"],"symbols":["{SYMBOL}"],"depth":{args.depth}'
        if args.interval_ms:
            params += f',"interval_ms":{args.interval_ms}'
        request = ('{"method":"subscribe","params":{' + params + "}}").encode()
        stats = Stats()
        stop = asyncio.Event()
        counters = {"sent": 0, "errors": 0, "refused": 0}
        first_error: list[str] = []
        if isinstance(cluster, Direct):
            driver = asyncio.create_task(cluster.drive(SYMBOL, args.rate, stop, counters))
        else:
            driver = asyncio.create_task(
                drive(cluster.matcher, args.rate, stop, counters, first_error)
            )
        upstream_us: list[int] = []
        watcher = (
            asyncio.create_task(watch_redis(cluster.redis_url, stats, upstream_us))
            if cluster.redis_url
            else None
        )
        ctx = multiprocessing.get_context("spawn")
        shares = [args.subscribers // args.client_procs] * args.client_procs
        shares[0] += args.subscribers - sum(shares)
        children: list[tuple[BaseProcess, Connection]] = []
        for share in shares:
            parent_end, child_end = ctx.Pipe()
            child = ctx.Process(
                target=subscriber_process, args=(child_end, host, int(port), request, share)
            )
            child.start()
            children.append((child, parent_end))
        for _, end in children:
            if not await asyncio.to_thread(end.poll, 90):
                raise RuntimeError("subscribers did not all get their snapshot in time")
            await asyncio.to_thread(end.recv)  # "ready"
        await asyncio.sleep(args.warmup)
        pids = {**cluster.pids, "bench": os.getpid()}
        for i, (proc, _) in enumerate(children):
            assert proc.pid is not None
            pids[f"subscribers{i}"] = proc.pid
        cpu0 = {name: process_cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        for _, end in children:
            end.send("record")
        stats.recording = True
        sent0 = counters["sent"]
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        stats.recording = False
        for _, end in children:
            end.send("stop")
        elapsed = time.monotonic() - t0
        cpu = {
            name: ((process_cpu_seconds(pid) or 0.0) - cpu0[name]) / elapsed * 100
            for name, pid in pids.items()
        }
        sent = counters["sent"] - sent0
        for proc, end in children:
            lats, arrivals, frames, updates, slow, closed = await asyncio.to_thread(end.recv)
            stats.latencies_us += lats
            stats.arrivals += arrivals
            stats.frames += frames
            stats.updates += updates
            stats.slow += slow
            stats.closed += closed
            await asyncio.to_thread(proc.join, 10)
        stop.set()
        await driver
        if watcher is not None:
            watcher.cancel()
        lat = sorted(stats.latencies_us)
        p50, p99, p999 = percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 0.999)
        mx = lat[-1] / 1000.0 if lat else float("nan")
        delivered = int(stats.frames / elapsed)
        print(
            f"commands sent: {sent / elapsed:.0f}/s (errors {counters['errors']}, refused "
            f"{counters['refused']}{', first: ' + first_error[0] if first_error else ''}); "
            f"book updates received: {stats.updates} "
            f"({stats.updates / elapsed / max(1, args.subscribers):.0f}/s per subscriber)"
        )
        print(
            f"latency publish->receive ms: p50 {p50:.2f} p99 {p99:.2f} p99.9 {p999:.2f} "
            f"max {mx:.2f}; delivered {delivered} msg/s; slow_consumer {stats.slow}, "
            f"closed early {stats.closed}"
        )
        if upstream_us:
            up = sorted(upstream_us)
            print(
                f"of which engine ts -> Redis subscriber (batching, fsync, publish) ms: "
                f"p50 {percentile(up, 0.5):.2f} p99 {percentile(up, 0.99):.2f} "
                f"max {up[-1] / 1000:.2f}"
            )
        fanout = sorted(
            (t - stats.at_redis[seq]) // 1000 for seq, t in stats.arrivals if seq in stats.at_redis
        )
        if fanout:
            print(
                f"of which Redis -> gateway -> subscriber (the fan-out) ms: "
                f"p50 {percentile(fanout, 0.5):.2f} p99 {percentile(fanout, 0.99):.2f} "
                f"p99.9 {percentile(fanout, 0.999):.2f} max {fanout[-1] / 1000:.2f}"
            )
        print("cpu %: " + ", ".join(f"{name} {pct:.0f}" for name, pct in cpu.items()))
        print(f"RESULT md subscribers={args.subscribers} p99_ms={p99:.2f} "
              f"delivered_per_s={delivered}")
        return 0
    finally:
        await asyncio.to_thread(cluster.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.marketdata")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0, help="book updates per second")
    parser.add_argument("--interval-ms", type=int, default=0, help="conflation interval")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--no-redis", action="store_true", help="market data over the link")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="processes the subscribers are spread over")
    parser.add_argument(
        "--mode", choices=("exchange", "direct"), default="exchange",
        help="exchange: through a real matcher (default); direct: publisher -> Redis -> "
        "gateway, exactly one book update per command",
    )
    args = parser.parse_args(argv)
    from exchange.logs import configure_logging

    configure_logging("md-bench", "warning")  # stderr, warnings only: stdout is the report
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
