"""Engine benchmark: `python -m bench.engine [--commands N] [--seed S] [--book K]`.

Applies the command mix of docs/ARCHITECTURE.md (bench.engine_mix) to an engine whose book is first
filled to about K resting orders, timing every single apply() with perf_counter_ns. Prints
throughput (commands over the summed apply() time), latency percentiles including the max,
and ends with one line `RESULT engine commands_per_s=<int> p99_us=<float>`.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from array import array
from collections.abc import Sequence

from bench import machine
from bench.engine_mix import MixGenerator
from exchange.engine.core import Engine
from exchange.model.commands import AmendOrder, CancelOrder, Command, PlaceOrder
from exchange.model.events import CancelRejected, CommandRejected, Event, OrderRejected
from exchange.model.instruments import load_config

# Young-generation threshold while the engine runs: the hot path allocates few objects that
# the cyclic collector tracks (orders and events are untracked structs), so collections are
# rare and cheap; the frozen start-up state is never rescanned.
GC_THRESHOLD = (50_000, 50, 1000)
BATCH = 1000
REJECTIONS = (OrderRejected, CancelRejected, CommandRejected)


# A command's kind in the mix, as the benchmarks time it (bench.engine_compare too).
PLACE_RESTING, PLACE_TAKING, CANCEL, AMEND, OTHER = range(5)
KIND_NAMES = ("place resting", "place taking", "cancel", "amend", "other")


def command_kind(cmd: Command) -> int:
    """PLACE_TAKING for a market order or a non-GTC limit (IOC, FOK), PLACE_RESTING for a GTC
    limit, CANCEL, AMEND, else OTHER."""
    if isinstance(cmd, PlaceOrder):
        return PLACE_TAKING if cmd.order_type == "market" or cmd.tif != "GTC" else PLACE_RESTING
    if isinstance(cmd, CancelOrder):
        return CANCEL
    if isinstance(cmd, AmendOrder):
        return AMEND
    return OTHER


def percentile_us(sorted_ns: Sequence[int], p: float) -> float:
    """The p-th percentile of ascending nanosecond timings, in µs."""
    idx = min(len(sorted_ns) - 1, int(len(sorted_ns) * p / 100.0))
    return sorted_ns[idx] / 1000.0


def run(
    commands: int, seed: int, book: int, gc_tuning: bool, taker_lots: int = 50,
    taker_reach: int = 10,
) -> int:
    config = load_config()
    engine = Engine(config)
    gen = MixGenerator(config, seed=seed, taker_lots=taker_lots, taker_reach=taker_reach)
    seq = 0
    for cmd in gen.setup_commands():
        seq += 1
        engine.apply(cmd, seq, seq * 1000)
    while gen.live_orders < book:
        seq += 1
        gen.observe(engine.apply(gen.resting_limit(), seq, seq * 1000))
    start_orders = gen.live_orders
    gc.collect()
    if gc_tuning:
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLD)
    lat = array("q", bytes(8 * commands))
    kinds = array("b", bytes(commands))
    apply = engine.apply
    next_command = gen.next_command
    observe = gen.observe
    clock = time.perf_counter_ns
    gc_before = sum(s["collections"] for s in gc.get_stats())
    cpu0 = time.thread_time_ns()
    wall0 = clock()
    rejected = 0
    i = 0
    while i < commands:
        # Commands are made a batch at a time, as a matcher receives them, so that only
        # apply() runs between the clock reads; the generator learns from the batch's events
        # afterwards.
        batch = [next_command() for _ in range(min(BATCH, commands - i))]
        results: list[list[Event]] = []
        for cmd in batch:
            seq += 1
            t0 = clock()
            events = apply(cmd, seq, seq * 1000)
            t1 = clock()
            lat[i] = t1 - t0
            i += 1
            results.append(events)
        first = i - len(batch)
        for j, (cmd, events) in enumerate(zip(batch, results, strict=True)):
            kinds[first + j] = command_kind(cmd)
            if type(events[0]) in REJECTIONS:
                rejected += 1
            observe(events)
    wall = clock() - wall0
    cpu = time.thread_time_ns() - cpu0
    gc_runs = sum(s["collections"] for s in gc.get_stats()) - gc_before
    total_ns = sum(lat)
    ordered = array("q", sorted(lat))
    cps = int(commands * 1e9 / total_ns)
    p50, p99, p999 = (percentile_us(ordered, p) for p in (50, 99, 99.9))
    print(f"machine: {machine.cpu_model()}, python {platform.python_version()}")
    print(
        f"commands: {commands}  seed: {seed}  gc tuning: {gc_tuning}  gc runs: {gc_runs}  "
        f"marketable: up to {taker_lots} lots, IOC up to {taker_reach} ticks through"
    )
    print(f"book: {start_orders} resting orders at start, {gen.live_orders} at end")
    # A cancel or amend of an order that a taker of the same batch filled first is rejected.
    print(f"rejected: {rejected} commands")
    print(f"apply() time: {total_ns / 1e9:.3f} s  (wall incl. generator: {wall / 1e9:.3f} s)")
    # Below 100%, other processes took the core for part of the run: every figure is worse.
    print(f"cpu share of the run: {cpu * 100 / wall:.0f}% of one core")
    print(f"throughput: {cps} commands/s")
    # What the same run would give with the core to itself, assuming the other processes
    # took it evenly: an estimate for comparing runs on a shared machine, not the result.
    print(f"throughput per CPU-second (estimate): {int(cps * wall / max(1, cpu))} commands/s")
    print(
        f"latency us: p50={p50:.2f} p90={percentile_us(ordered, 90):.2f} p99={p99:.2f} "
        f"p99.9={p999:.2f} p99.99={percentile_us(ordered, 99.99):.2f} max={ordered[-1] / 1000:.1f}"
    )
    fifth = commands // 5
    if fifth:
        # The book grows during the run; throughput per fifth shows what that costs.
        parts = [
            int(fifth * 1e9 / max(1, sum(lat[i * fifth : (i + 1) * fifth]))) for i in range(5)
        ]
        print("throughput by fifth of the run: " + " ".join(str(p) for p in parts))
    for k, name in enumerate(KIND_NAMES):
        sample = array("q", sorted(lat[i] for i in range(commands) if kinds[i] == k))
        if sample:
            print(
                f"  {name:<16} {len(sample) * 100 / commands:5.1f}%  "
                f"p50={percentile_us(sample, 50):.2f} p99={percentile_us(sample, 99):.2f} "
                f"max={sample[-1] / 1000:.1f}"
            )
    engine.validate()
    print(f"RESULT engine commands_per_s={cps} p99_us={p99:.2f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--book", type=int, default=10_000, help="resting orders at start")
    parser.add_argument(
        "--no-gc-tuning", action="store_true", help="leave the collector at its defaults"
    )
    parser.add_argument(
        "--taker-lots", type=int, default=50,
        help="marketable orders are 1..N lots (resting ones 1..50); 150 with --taker-reach 40 "
        "grows the book 10k -> ~45k per 1M commands, like the comparison in docs/ARCHITECTURE.md",
    )
    parser.add_argument("--taker-reach", type=int, default=10)
    args = parser.parse_args(argv)
    return run(
        args.commands, args.seed, args.book, not args.no_gc_tuning, args.taker_lots,
        args.taker_reach,
    )


if __name__ == "__main__":
    sys.exit(main())
