"""A key's rate-limit tier: set at creation and by SetKeyLimits, shown by GetApiKey, bounded
(a bad value changes nothing), kept by snapshots, and an older snapshot (no tiers yet)
still loads with every key on the gateway's default."""

from __future__ import annotations

import msgspec
import pytest

from exchange.engine.core import Engine
from exchange.engine.state import DECODER, ENCODER
from exchange.model.commands import (
    MAX_KEY_LIMIT,
    Command,
    CreateAccount,
    CreateApiKey,
    RevokeApiKey,
    SetKeyLimits,
)
from exchange.model.events import ApiKeyCreated, CommandRejected, KeyLimitsSet
from exchange.model.queries import ApiKeyInfo, GetApiKey
from tests.exchange.conftest import CONFIG, Driver, business_hash


def _info(engine: Engine, api_key: str) -> ApiKeyInfo:
    info = engine.answer(GetApiKey(api_key=api_key))
    assert isinstance(info, ApiKeyInfo)
    return info


def test_a_key_is_created_on_the_default_tier_or_its_own(ex: Driver) -> None:
    plain = ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1"))[0]
    maker = ex.do(CreateApiKey(account_id=1, api_key="k2", secret="s2", orders_limit=2_000,
                               requests_limit=5_000))[0]
    assert isinstance(plain, ApiKeyCreated) and plain.orders_limit == 0
    assert isinstance(maker, ApiKeyCreated)
    assert (maker.orders_limit, maker.requests_limit) == (2_000, 5_000)
    assert (_info(ex.engine, "k1").orders_limit, _info(ex.engine, "k1").requests_limit) == (0, 0)
    assert (_info(ex.engine, "k2").orders_limit, _info(ex.engine, "k2").requests_limit) == (
        2_000, 5_000)


def test_set_key_limits_changes_only_the_limits_given(ex: Driver) -> None:
    ex.do(CreateApiKey(account_id=2, api_key="k1", secret="s1"))
    events = ex.do(SetKeyLimits(api_key="k1", orders_limit=1_000))
    assert events == [KeyLimitsSet(seq=ex.seq, ts=ex.seq * 1000, account_id=2, api_key="k1",
                                   orders_limit=1_000, requests_limit=0)]
    ex.do(SetKeyLimits(api_key="k1", requests_limit=3_000))
    info = _info(ex.engine, "k1")
    assert (info.orders_limit, info.requests_limit) == (1_000, 3_000)
    ex.do(SetKeyLimits(api_key="k1", orders_limit=0))  # back to the gateway's default
    info = _info(ex.engine, "k1")
    assert (info.orders_limit, info.requests_limit) == (0, 3_000)


@pytest.mark.parametrize("bad", [
    {"orders_limit": -1}, {"orders_limit": MAX_KEY_LIMIT + 1}, {"requests_limit": -5},
    {"requests_limit": MAX_KEY_LIMIT + 1}, {"orders_limit": True},
])
def test_an_out_of_range_limit_is_1002_and_changes_nothing(ex: Driver, bad: dict[str, int]
                                                             ) -> None:
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1", orders_limit=7))
    before = business_hash(ex.engine)
    events = ex.do(SetKeyLimits(api_key="k1", **bad))
    assert len(events) == 1 and isinstance(events[0], CommandRejected)
    assert events[0].code == 1002
    created = ex.do(CreateApiKey(account_id=1, api_key="k9", secret="s9",
                                 orders_limit=bad.get("orders_limit", 0),
                                 requests_limit=bad.get("requests_limit", 0)))
    assert isinstance(created[0], CommandRejected) and created[0].code == 1002
    assert business_hash(ex.engine) == before
    assert _info(ex.engine, "k1").orders_limit == 7


def test_the_bounds_themselves_are_accepted(ex: Driver) -> None:
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1"))
    ex.do(SetKeyLimits(api_key="k1", orders_limit=1, requests_limit=MAX_KEY_LIMIT))
    info = _info(ex.engine, "k1")
    assert (info.orders_limit, info.requests_limit) == (1, MAX_KEY_LIMIT)


def test_limits_of_an_unknown_or_revoked_key_are_3010(ex: Driver) -> None:
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1"))
    ex.do(RevokeApiKey(api_key="k1"))
    before = business_hash(ex.engine)
    for key in ("k1", "never"):
        events = ex.do(SetKeyLimits(api_key=key, orders_limit=5))
        assert isinstance(events[0], CommandRejected) and events[0].code == 3010
    assert business_hash(ex.engine) == before


def test_snapshot_and_replay_keep_the_tier(ex: Driver) -> None:
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1", orders_limit=50))
    ex.do(CreateApiKey(account_id=2, api_key="k2", secret="s2"))
    ex.do(SetKeyLimits(api_key="k2", orders_limit=900, requests_limit=4_000))
    data = ex.engine.snapshot()
    restored = Engine.restore(CONFIG, data)
    restored.validate()
    assert restored.snapshot() == data
    assert _info(restored, "k1").orders_limit == 50
    info = _info(restored, "k2")
    assert (info.orders_limit, info.requests_limit) == (900, 4_000)


def test_replaying_the_same_commands_gives_the_same_tier() -> None:
    commands: list[Command] = [
        CreateApiKey(account_id=1, api_key="k1", secret="s1", orders_limit=10),
        SetKeyLimits(api_key="k1", requests_limit=20),
        SetKeyLimits(api_key="k1", orders_limit=30),
        SetKeyLimits(api_key="k1", orders_limit=-1),  # rejected: changes nothing
    ]
    engines = []
    for _ in range(2):
        d = Driver()
        d.do(CreateAccount(label="a"))
        for command in commands:
            d.do(command)
        engines.append(d.engine)
    assert engines[0].snapshot() == engines[1].snapshot()
    info = _info(engines[0], "k1")
    assert (info.orders_limit, info.requests_limit) == (30, 20)


def test_an_older_snapshot_loads_with_every_key_on_the_default(ex: Driver) -> None:
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1", orders_limit=50))
    state = DECODER.decode(ex.engine.snapshot())
    # Versions 2 and 3 wrote four fields per key: drop the limits, as such snapshots have none.
    raw = msgspec.msgpack.decode(ENCODER.encode(state))
    raw[0] = 3
    key_index = 7  # EngineState.api_keys
    raw[key_index] = [record[:4] for record in raw[key_index]]
    restored = Engine.restore(CONFIG, msgspec.msgpack.encode(raw))
    restored.validate()
    info = _info(restored, "k1")
    assert (info.account_id, info.orders_limit, info.requests_limit) == (1, 0, 0)
