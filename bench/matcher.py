"""Benchmark of the matcher over its link, with the journal fsynced (the default).

    python -m bench.matcher [--seconds 5] [--open-seconds 10] [--rate 4000]
                                     [--connections 4] [--window 1024] [--fsync always|never]

Starts `exchange matcher` as a subprocess on a temp data dir and unix socket, funds accounts,
then:
1. closed loop: several pipelined connections keep `window` commands each in flight for
   `seconds`; prints sustained commands/s (every one journaled, fsynced, applied, answered);
2. open loop: `rate` commands/s spread over the connections on a fixed schedule (a timerfd
   pacer, so the schedule does not wait for answers), ack latency measured from each
   command's *scheduled* send time; prints p50/p99/p99.9/max.
The command mix is the engine's (bench.engine_mix: ~50% limit orders near the touch, 35%
cancels, 10% amends, 5% marketable). The last line is
    RESULT matcher commands_per_s=<int> p99_us=<float>
with p99 of the open-loop phase.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench import machine
from bench.engine_mix import MixGenerator
from exchange.journal import disk_probe
from exchange.journal.disk_probe import percentile
from exchange.link.client import LinkClient, LinkDown
from exchange.link.messages import Refused, Result
from exchange.model.commands import Deposit
from exchange.model.instruments import ExchangeConfig, load_config
from loadtest.cluster import process_cpu_seconds

# msgpack integers stop at 2**64; deposits far above any bench need but inside that.
MAX_DEPOSIT = 10**18


class MatcherUnderTest:
    def __init__(self, fsync: str, extra: list[str], parent: str = "/tmp") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mbench-", dir=parent))
        self.address = f"unix:{self.tmp / 'm.sock'}"
        self.log_path = self.tmp / "matcher.log"
        self.fsync = fsync
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.metrics_port = probe.getsockname()[1]
        cmd = [sys.executable, "-m", "exchange.cli.main", "matcher", "--data-dir",
               str(self.tmp / "data"), "--listen", self.address, "--fsync", self.fsync,
               "--metrics-port", str(self.metrics_port), *self.extra]
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=log_file)

    async def connect(self, name: str, limit_s: float = 30.0) -> LinkClient:
        deadline = time.monotonic() + limit_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("matcher exited:\n" + self.log_path.read_text()[-3000:])
            try:
                return await LinkClient.connect(self.address, name)
            except LinkDown:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """The matcher's Prometheus samples without labels (name -> value)."""
        if not self.metrics_port:
            return {}
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and (
                    "{" not in line or line.startswith(f"{_WRITE}_bucket{{")):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of the matcher process so far (0 if not ours)."""
        if self.proc is None:
            return 0.0
        return process_cpu_seconds(self.proc.pid) or 0.0

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        shutil.rmtree(self.tmp, ignore_errors=True)
        return text


_WRITE = "matcher_journal_write_seconds"


def write_quantiles(before: dict[str, float], after: dict[str, float],
                    quantiles: tuple[float, ...]) -> list[float]:
    """Upper bounds (µs) of the journal write+fsync buckets holding these quantiles between
    two scrapes: at most one bucket's width above the truth (the buckets step by 25-50%)."""
    prefix = f'{_WRITE}_bucket{{le="'
    bounds = sorted((float(k[len(prefix):-2]), after[k] - before.get(k, 0.0))
                    for k in after if k.startswith(prefix))
    total = bounds[-1][1] if bounds else 0.0
    if total <= 0:
        return [float("nan")] * len(quantiles)  # no write between the two scrapes
    out = []
    for q in quantiles:
        bound = next((b for b, cumulative in bounds if cumulative >= q * total), float("nan"))
        out.append(bound * 1e6)
    return out


async def setup(client: LinkClient, config: ExchangeConfig, accounts: int) -> None:
    gen = MixGenerator(config, seed=0, accounts=accounts)
    for command in gen.setup_commands():
        if isinstance(command, Deposit):
            command = Deposit(account_id=command.account_id, asset=command.asset,
                              amount=min(command.amount, MAX_DEPOSIT))
        outcome = await client.submit(command)
        if not isinstance(outcome, Result):
            raise RuntimeError(f"setup command refused: {outcome}")


class Driver:
    """One connection with its own seeded mix, learning order ids from its results."""

    def __init__(self, client: LinkClient, config: ExchangeConfig, seed: int,
                 accounts: int) -> None:
        self.client = client
        self.gen = MixGenerator(config, seed=seed, accounts=accounts)
        self.acked = 0
        self.refused = 0
        self.errors = 0

    def send(self, on_done: Callable[[Result | Refused | None], None]) -> None:
        gen = self.gen

        def done(outcome: Result | Refused | LinkDown) -> None:
            if type(outcome) is Result:
                self.acked += 1
                gen.observe(outcome.events)
                on_done(outcome)
            elif isinstance(outcome, Refused):
                self.refused += 1
                on_done(outcome)
            else:
                self.errors += 1
                on_done(None)

        self.client.submit_callback(gen.next_command(), done)


async def closed_loop(drivers: list[Driver], window: int, seconds: float) -> tuple[int, float]:
    """Each driver keeps `window` commands in flight until the time is up."""
    stop_at = time.perf_counter() + seconds
    finished = asyncio.get_running_loop().create_future()
    in_flight = [0]

    def refill(driver: Driver) -> Callable[[Result | Refused | None], None]:
        def on_done(_: Result | Refused | None) -> None:
            in_flight[0] -= 1
            if time.perf_counter() < stop_at and not driver.client.closed:
                in_flight[0] += 1
                driver.send(on_done)
            elif in_flight[0] == 0 and not finished.done():
                finished.set_result(None)

        return on_done

    start_acked = sum(d.acked for d in drivers)
    started = time.perf_counter()
    for driver in drivers:
        callback = refill(driver)
        for _ in range(window):
            in_flight[0] += 1
            driver.send(callback)
    await asyncio.wait_for(finished, seconds + 60)
    elapsed = time.perf_counter() - started
    return sum(d.acked for d in drivers) - start_acked, elapsed


async def open_loop(drivers: list[Driver], rate: float, seconds: float) -> list[float]:
    """Send on a fixed schedule (round-robin over drivers); latency from the scheduled time."""
    from loadtest.pacer import Pacer

    loop = asyncio.get_running_loop()
    pacer = Pacer(loop)
    latencies: list[float] = []
    total = int(rate * seconds)
    outstanding = [0]
    all_done = loop.create_future()
    interval_ns = int(1e9 / rate)
    t0 = time.monotonic_ns() + 5_000_000

    def make_callback(scheduled_ns: int) -> Callable[[Result | Refused | None], None]:
        def on_done(outcome: Result | Refused | None) -> None:
            if outcome is not None:
                latencies.append((time.monotonic_ns() - scheduled_ns) / 1000.0)
            outstanding[0] -= 1
            if outstanding[0] == 0 and sent[0] == total and not all_done.done():
                all_done.set_result(None)

        return on_done

    sent = [0]
    try:
        for i in range(total):
            scheduled = t0 + i * interval_ns
            if time.monotonic_ns() < scheduled:
                await pacer.sleep_until(scheduled)
            outstanding[0] += 1
            sent[0] += 1
            drivers[i % len(drivers)].send(make_callback(scheduled))
        if outstanding[0]:
            await asyncio.wait_for(all_done, 60)
    finally:
        pacer.close()
    return latencies


async def bench(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    extra = ["--snapshot-every", str(args.snapshot_every)]
    if args.config:
        extra += ["--config", args.config]
    mut = MatcherUnderTest(args.fsync, extra, args.dir)
    for preallocated in (False, True):
        probe = await asyncio.to_thread(disk_probe.measure, mut.tmp, preallocated=preallocated)
        print(probe.line(), flush=True)
    if args.address:
        mut.address = args.address  # an already running matcher (e.g. under a profiler)
    else:
        mut.start()
    try:
        admin = await mut.connect("bench-setup")
        await setup(admin, config, args.accounts)
        await admin.close()
        clients = [await mut.connect(f"bench-{i}") for i in range(args.connections)]
        drivers = [Driver(c, config, seed=i + 1, accounts=args.accounts)
                   for i, c in enumerate(clients)]
        # Warm up (book fills up to its working size) before measuring.
        await closed_loop(drivers, args.window, args.warmup)
        m0 = await asyncio.to_thread(mut.metrics)
        cpu0 = mut.cpu_seconds(), time.process_time()
        count, elapsed = await closed_loop(drivers, args.window, args.seconds)
        per_s = count / elapsed
        cpu1 = mut.cpu_seconds(), time.process_time()
        m1 = await asyncio.to_thread(mut.metrics)
        print(f"closed loop: {count} commands in {elapsed:.2f} s over {len(drivers)} "
              f"connections x window {args.window}: {per_s:,.0f} commands/s "
              f"(fsync {args.fsync})", flush=True)
        if count:
            print(f"CPU per command: matcher {(cpu1[0] - cpu0[0]) / count * 1e6:.1f} us, "
                  f"this driver {(cpu1[1] - cpu0[1]) / count * 1e6:.1f} us "
                  f"(a whole core each would allow ~{count / max(cpu1[0] - cpu0[0], 1e-9):,.0f}"
                  f" commands/s for the matcher)", flush=True)
        batches = m1.get("matcher_batch_commands_count", 0) - m0.get(
            "matcher_batch_commands_count", 0)
        if batches:
            writes = m1["matcher_journal_write_seconds_sum"] - m0.get(
                "matcher_journal_write_seconds_sum", 0)
            print(f"batches: {batches:.0f}, mean {count / batches:.0f} commands; journal "
                  f"write+fsync mean {writes / batches * 1e6:.0f} us per batch", flush=True)
        m2 = await asyncio.to_thread(mut.metrics)
        cpu2 = mut.cpu_seconds()
        latencies = await open_loop(drivers, args.rate, args.open_seconds)
        cpu3 = mut.cpu_seconds()
        m3 = await asyncio.to_thread(mut.metrics)
        batches = m3.get("matcher_batch_commands_count", 0) - m2.get(
            "matcher_batch_commands_count", 0)
        if batches:
            writes = m3["matcher_journal_write_seconds_sum"] - m2.get(
                "matcher_journal_write_seconds_sum", 0)
            w50, w99, w999 = write_quantiles(m2, m3, (0.5, 0.99, 0.999))
            print(f"open loop batches: {batches:.0f}, mean {len(latencies) / batches:.1f} "
                  f"commands; journal write+fsync mean {writes / batches * 1e6:.0f} us "
                  f"(p50 <= {w50:.0f}, p99 <= {w99:.0f}, p99.9 <= {w999:.0f} us); matcher CPU "
                  f"{(cpu3 - cpu2) / max(len(latencies), 1) * 1e6:.1f} us per command", flush=True)
        latencies.sort()
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        p999, worst = percentile(latencies, 99.9), latencies[-1] if latencies else float("nan")
        print(f"open loop: {len(latencies)} acks at {args.rate:.0f}/s for {args.open_seconds} s:"
              f" p50 {p50:.1f} us, p99 {p99:.1f} us, p99.9 {p999:.1f} us, max {worst:.1f} us",
              flush=True)
        refused = sum(d.refused for d in drivers)
        errors = sum(d.errors for d in drivers)
        live = sum(d.gen.live_orders for d in drivers)
        print(f"refused {refused}, link errors {errors}, resting orders known to the mix {live}")
        for client in clients:
            await client.close()
    finally:
        log_text = mut.stop()
    snaps = [line for line in log_text.splitlines() if '"snapshot_written"' in line]
    if snaps:
        print(f"snapshots during the run: {len(snaps)}; last: {snaps[-1]}")
    print(machine.describe())
    print(f"RESULT matcher commands_per_s={int(per_s)} p99_us={p99:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matcher",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--open-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=4000.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--accounts", type=int, default=16)
    parser.add_argument("--snapshot-every", type=int, default=1_000_000,
                        help="the matcher's default; lower it to see snapshots under load")
    parser.add_argument("--address", default=None,
                        help="drive this running matcher instead of starting one")
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--dir", default="/tmp",
                        help="where the matcher's temporary data directory is made: put it on "
                             "the disk that will hold the journal to measure that disk")
    args = parser.parse_args(argv)
    import uvloop

    return uvloop.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
