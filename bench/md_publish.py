"""`python -m bench.md_publish`: the matcher's Redis publisher alone, CPU per write.

Starts a private redis-server and the real `RedisTransport` under uvloop (as the matcher
runs it), then every `--interval-ms` sends `--per-write` batches of `--size` bytes, which go
out as one write, for `--seconds`; and the same timer loop without sends, as the baseline.
At 4,000 orders/s the matcher makes ~1,000-1,300 batches a second of 3-4 commands, each
publishing a few symbols' batches in one write: the defaults (one write of 3 x 300 bytes
every 1 ms) are that pattern. Prints the process's CPU (user + system) per write above the
baseline and its voluntary context switches (wake-ups after a wait) per write, then one line:

    RESULT md_publish cpu_us_per_write=<float> wakeups_per_write=<float>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.machine import describe
from exchange.marketdata.publish import RedisTransport
from loadtest.cluster import free_port

STARTUP_S = 10.0


def _voluntary_switches() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split(":")[1])
    return 0


async def _phase(transport: RedisTransport | None, args: argparse.Namespace) -> tuple[float, int]:
    """CPU seconds and voluntary switches of one timed phase (sends when a transport is given)."""
    payload = b"x" * args.size
    symbols = [f"S{i}" for i in range(args.per_write)]
    interval = args.interval_ms / 1000
    ticks = int(args.seconds / interval)
    loop = asyncio.get_running_loop()
    cpu0, sw0 = time.process_time(), _voluntary_switches()
    next_at = loop.time()
    for _ in range(ticks):
        next_at += interval
        if transport is not None:
            for symbol in symbols:
                transport.send(symbol, payload)
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    # The last write's reply, if any, arrives within the same interval.
    await asyncio.sleep(interval)
    return time.process_time() - cpu0, _voluntary_switches() - sw0


async def run(args: argparse.Namespace, url: str) -> int:
    transport = RedisTransport(url)
    try:
        await transport.start()
        deadline = time.monotonic() + STARTUP_S
        while not transport.connected:
            if time.monotonic() > deadline:
                raise RuntimeError("the publisher did not connect")
            await asyncio.sleep(0.05)
        await _phase(transport, argparse.Namespace(**{**vars(args), "seconds": 0.5}))  # warm-up
        base_cpu = base_sw = send_cpu = send_sw = 0.0
        for _ in range(args.rounds):  # alternated, so a neighbour's burst hits both alike
            cpu, sw = await _phase(None, args)
            base_cpu, base_sw = base_cpu + cpu, base_sw + sw
            cpu, sw = await _phase(transport, args)
            send_cpu, send_sw = send_cpu + cpu, send_sw + sw
        writes = args.rounds * int(args.seconds / (args.interval_ms / 1000))
        cpu_us = 1e6 * (send_cpu - base_cpu) / writes
        wakeups = (send_sw - base_sw) / writes
        print(describe())
        print(f"{writes} writes of {args.per_write} x {args.size} B every {args.interval_ms} ms: "
              f"CPU {1e6 * send_cpu / writes:.1f} µs per tick with sends, "
              f"{1e6 * base_cpu / writes:.1f} without; "
              f"wake-ups {send_sw / writes:.2f} per tick with sends, "
              f"{base_sw / writes:.2f} without")
        print(f"RESULT md_publish cpu_us_per_write={cpu_us:.1f} wakeups_per_write={wakeups:.2f}")
        return 0
    finally:
        await transport.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.md_publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/send phase pairs")
    parser.add_argument("--interval-ms", type=float, default=1.0)
    parser.add_argument("--per-write", type=int, default=3, help="batches per write")
    parser.add_argument("--size", type=int, default=300, help="bytes per batch")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("needs the redis-server binary", file=sys.stderr)
        return 2
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="md-publish-bench-")
    proc = subprocess.Popen(
        [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        return int(uvloop.run(run(args, f"redis://127.0.0.1:{port}/0")))
    finally:
        proc.kill()
        proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


if __name__ == "__main__":
    sys.exit(main())
