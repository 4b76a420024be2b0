"""The order mix: proportions, grid validity, price band, and bounded open orders."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from exchange.model.instruments import Instrument, load_config
from loadtest.mix import (
    AMEND,
    CANCEL,
    MARKETABLE,
    PLACE,
    Mix,
    OpenOrder,
    OpenOrders,
    request_body,
)


def instruments() -> list[Instrument]:
    return list(load_config().instruments.values())


def run_mix(mix: Mix, n: int) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for _ in range(n):
        action = mix.next_action()
        kinds[action.kind] += 1
        if action.resting is not None:  # the exchange accepted it and it rests
            mix.open.add(action.resting)
    return kinds


def test_mix_proportions_match_the_design() -> None:
    kinds = run_mix(Mix(instruments(), "t", seed=7, max_open=10_000), 40_000)
    share = {k: v / 40_000 for k, v in kinds.items()}
    assert abs(share[PLACE] - 0.50) < 0.02
    assert abs(share[CANCEL] - 0.35) < 0.02
    assert abs(share[AMEND] - 0.10) < 0.01
    assert abs(share[MARKETABLE] - 0.05) < 0.01


def test_every_price_and_qty_is_on_the_grid_and_inside_the_band() -> None:
    insts = {i.symbol: i for i in instruments()}
    mix = Mix(list(insts.values()), "t", seed=3)
    symbols: Counter[str] = Counter()
    for _ in range(5_000):
        action = mix.next_action()
        p = action.params
        inst = insts[p["symbol"]]
        symbols[inst.symbol] += 1
        for key in ("price", "new_price"):
            if key in p:
                ticks = inst.price_to_ticks(p[key])
                assert ticks is not None, p
                assert inst.ticks_to_price(ticks) == p[key]  # canonical form
                band = inst.reference_ticks * inst.price_band_pct // 100
                assert abs(ticks - inst.reference_ticks) < band
        for key in ("qty", "new_qty"):
            if key in p:
                lots = inst.qty_to_lots(p[key])
                assert lots is not None and inst.min_lots <= lots <= inst.max_lots, p
        assert len(action.client_order_id) <= 36
        if action.resting is not None:
            mix.open.add(action.resting)
    assert set(symbols) == set(insts)


def test_resting_orders_never_cross_and_marketable_ones_do() -> None:
    insts = {i.symbol: i for i in instruments()}
    mix = Mix(list(insts.values()), "t", seed=5)
    for _ in range(3_000):
        action = mix.next_action()
        p = action.params
        if action.method != "order.place":
            continue
        inst = insts[p["symbol"]]
        ticks = inst.price_to_ticks(p["price"])
        assert ticks is not None
        above = ticks > inst.reference_ticks
        if action.kind == PLACE:
            assert p["tif"] == "GTC" and above == (p["side"] == "sell")
        else:
            assert p["tif"] == "IOC" and above == (p["side"] == "buy")


def test_cancels_and_amends_target_only_own_open_orders_and_open_is_bounded() -> None:
    mix = Mix(instruments(), "t", seed=11, max_open=50)
    seen: set[str] = set()
    for _ in range(5_000):
        action = mix.next_action()
        if action.kind in (CANCEL, AMEND):
            assert action.client_order_id in seen
        if action.kind == CANCEL:
            assert mix.open.get(action.client_order_id) is None
        if action.resting is not None:
            seen.add(action.client_order_id)
            mix.open.add(action.resting)
        assert len(mix.open) <= 50
    assert len(seen) == len({cid for cid in seen})


def test_the_same_seed_gives_the_same_stream() -> None:
    a = Mix(instruments(), "t", seed=42)
    b = Mix(instruments(), "t", seed=42)
    for _ in range(200):
        x, y = a.next_action(), b.next_action()
        assert x.params == y.params
        if x.resting and y.resting:
            a.open.add(x.resting)
            b.open.add(y.resting)


def test_open_orders_swap_remove_keeps_the_index_right() -> None:
    oo = OpenOrders()
    for i in range(10):
        oo.add(OpenOrder(f"c{i}", "S", "buy", 1, 1))
    assert oo.remove("c3") is not None
    assert oo.remove("c3") is None
    assert oo.remove("c9") is not None
    assert len(oo) == 8
    for cid, pos in oo.index.items():
        assert oo.items[pos].client_order_id == cid


def test_the_spliced_request_is_what_the_json_encoder_writes() -> None:
    # The body is spliced from templates; it must be byte for byte the encoder's JSON of its
    # method and params (which Action.params decodes back), so the exchange sees the same text.
    mix = Mix(instruments(), "t-1a", seed=9)
    kinds: Counter[str] = Counter()
    for _ in range(2_000):
        action = mix.next_action()
        kinds[action.kind] += 1
        assert action.body == request_body(action.method, action.params)
        request = msgspec.json.decode(b'{"id":12' + action.body)
        assert request["id"] == 12 and request["method"] == action.method
        if action.resting is not None:
            mix.open.add(action.resting)
    assert set(kinds) == {PLACE, CANCEL, AMEND, MARKETABLE}


def test_a_tag_that_would_need_escaping_is_refused() -> None:
    with pytest.raises(ValueError, match="escaping"):
        Mix(instruments(), 'bad"tag', seed=1)
