"""Snapshot -> restore: the same hash, the same state, and the same events afterwards;
replaying the same commands gives byte-identical events and state."""

from __future__ import annotations

import msgspec

from exchange.engine.core import Engine
from exchange.model.commands import Command
from exchange.model.events import Event
from tests.exchange.conftest import CONFIG, recorded_commands

ENC = msgspec.msgpack.Encoder()


def run(engine: Engine, cmds: list[Command], first_seq: int) -> list[Event]:
    events: list[Event] = []
    for i, cmd in enumerate(cmds):
        events.extend(engine.apply(cmd, first_seq + i, 7 * (first_seq + i)))
    return events


def test_restore_gives_same_hash_and_same_subsequent_events() -> None:
    cmds = recorded_commands(11, 4000)
    for cut in (0, 1, 57, 1500, 3000):
        a = Engine(CONFIG)
        run(a, cmds[:cut], 1)
        data = a.snapshot()
        b = Engine.restore(CONFIG, data)
        b.validate()
        assert b.state_hash() == a.state_hash()
        assert b.snapshot() == data
        assert b.last_seq == a.last_seq == cut
        rest_a = run(a, cmds[cut:], cut + 1)
        rest_b = run(b, cmds[cut:], cut + 1)
        assert ENC.encode(rest_a) == ENC.encode(rest_b)
        assert a.state_hash() == b.state_hash()


def test_replay_is_byte_identical() -> None:
    cmds = recorded_commands(12, 3000)
    a, b = Engine(CONFIG), Engine(CONFIG)
    assert ENC.encode(run(a, cmds, 1)) == ENC.encode(run(b, cmds, 1))
    assert a.snapshot() == b.snapshot()


def test_hash_changes_with_state() -> None:
    a = Engine(CONFIG)
    h0 = a.state_hash()
    cmds = recorded_commands(13, 10)
    run(a, cmds[:1], 1)
    assert a.state_hash() != h0
    assert len(h0) == 64 and int(h0, 16) >= 0


def test_restore_rejects_unknown_version() -> None:
    from exchange.engine.state import DECODER

    state = DECODER.decode(Engine(CONFIG).snapshot())
    data = ENC.encode(msgspec.structs.replace(state, version=999))
    try:
        Engine.restore(CONFIG, data)
    except ValueError as exc:
        assert "version" in str(exc)
    else:
        raise AssertionError("restore accepted an unknown snapshot version")


def test_restore_refuses_another_config() -> None:
    from exchange.model.instruments import parse_config

    other = parse_config({
        "assets": {"USD": {"decimals": 2}, "XAU": {"decimals": 3}},
        "instruments": [{
            "symbol": "XAU-USD", "base": "XAU", "quote": "USD", "tick_size": "1",
            "lot_size": "0.1", "min_qty": "0.1", "max_qty": "10", "price_band_pct": 5,
            "maker_fee_bps": 0, "taker_fee_bps": 5, "reference_price": "2000",
        }],
    })
    data = Engine(CONFIG).snapshot()
    try:
        Engine.restore(other, data)
    except ValueError as exc:
        assert "config" in str(exc)
    else:
        raise AssertionError("restore accepted a snapshot of another config")
