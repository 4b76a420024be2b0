"""The benchmark and its command mix: a short run ends with the RESULT line; the mix is
seeded and has the documented proportions (docs/PERFORMANCE.md: 50% limit orders near the
touch, 35% cancels, 10% amends, 5% marketable)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from bench import engine as bench
from bench.engine_mix import MixGenerator
from exchange.engine.core import Engine
from exchange.model.commands import AmendOrder, CancelOrder, PlaceOrder
from exchange.model.instruments import load_config

CONFIG = load_config()


def test_bench_prints_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--commands", "3000", "--book", "500", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"RESULT engine commands_per_s=\d+ p99_us=\d+\.\d+", lines[-1])


def run_mix(seed: int, n: int) -> tuple[list[str], Counter[str]]:
    engine = Engine(CONFIG)
    gen = MixGenerator(CONFIG, seed=seed)
    seq = 0
    for cmd in gen.setup_commands():
        seq += 1
        engine.apply(cmd, seq, seq)
    while gen.live_orders < 300:
        seq += 1
        gen.observe(engine.apply(gen.resting_limit(), seq, seq))
    kinds: Counter[str] = Counter()
    trace: list[str] = []
    for _ in range(n):
        cmd = gen.next_command()
        seq += 1
        events = engine.apply(cmd, seq, seq)
        gen.observe(events)
        trace.append(repr(cmd))
        if isinstance(cmd, PlaceOrder):
            kind = "taking" if cmd.order_type == "market" or cmd.tif != "GTC" else "resting"
        elif isinstance(cmd, CancelOrder | AmendOrder):
            kind = type(cmd).__name__
            assert type(events[0]).__name__ != "CancelRejected", "mix names a dead order"
        else:
            kind = "other"
        kinds[kind] += 1
    engine.validate()
    return trace, kinds


def test_mix_is_seeded_and_proportioned() -> None:
    trace, kinds = run_mix(5, 4000)
    assert trace == run_mix(5, 4000)[0]
    assert trace != run_mix(6, 4000)[0]
    share = {k: v / 4000 for k, v in kinds.items()}
    assert abs(share["resting"] - 0.50) < 0.03
    assert abs(share["CancelOrder"] - 0.35) < 0.03
    assert abs(share["AmendOrder"] - 0.10) < 0.02
    assert abs(share["taking"] - 0.05) < 0.015
