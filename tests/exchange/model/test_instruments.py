"""Instrument configuration: derived integer scales, edge conversions and bad configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import pytest

from exchange.model.instruments import ConfigError, load_config, parse_config

BASE: dict[str, Any] = {
    "assets": {"USD": {"decimals": 6}, "BTC": {"decimals": 8}},
    "instruments": [
        {
            "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": "0.01",
            "lot_size": "0.0001", "min_qty": "0.0001", "max_qty": "1000",
            "price_band_pct": 10, "maker_fee_bps": 10, "taker_fee_bps": 20,
            "reference_price": "50000.00",
        }
    ],
}


def variant(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["instruments"][0].update(changes)
    return data


def test_default_config_derives_scales() -> None:
    cfg = load_config()
    btc = cfg.instruments["BTC-USD"]
    assert (btc.price_decimals, btc.qty_decimals, btc.tick_units, btc.lot_units) == (2, 4, 1, 1)
    assert (btc.min_lots, btc.max_lots, btc.reference_ticks) == (1, 10_000_000, 5_000_000)
    assert btc.base_units_per_lot == 10_000  # 0.0001 BTC in satoshi
    assert btc.quote_units_per_tick_lot == 1  # 0.01 USD * 0.0001 = 1e-6 USD
    eth_btc = cfg.instruments["ETH-BTC"]
    assert eth_btc.quote_units_per_tick_lot == 1  # 1e-5 * 1e-3 = 1e-8 BTC
    assert eth_btc.base_units_per_lot == 100_000


def test_notional_is_exact_integer_units() -> None:
    btc = parse_config(BASE).instruments["BTC-USD"]
    ticks = btc.price_to_ticks("50000.01")
    lots = btc.qty_to_lots("0.0003")
    assert ticks is not None and lots is not None
    # 50000.01 USD * 0.0003 BTC = 15.000003 USD = 15000003 micro-dollars
    assert ticks * lots * btc.quote_units_per_tick_lot == 15_000_003


def test_edge_conversions() -> None:
    btc = parse_config(variant(tick_size="0.05")).instruments["BTC-USD"]
    assert btc.price_to_ticks("101.25") == 2025
    assert btc.price_to_ticks("101.27") is None  # off the tick grid
    assert btc.price_to_ticks("101.250") == 2025
    assert btc.price_to_ticks("101.251") is None  # too many decimals
    assert btc.price_to_ticks("0") is None
    assert btc.price_to_ticks("-5") is None
    assert btc.ticks_to_price(2025) == "101.25"
    assert btc.lots_to_qty(3) == "0.0003"
    assert btc.qty_to_lots("0.00015") is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base": "ETH"}, "unknown asset"),
        ({"quote": "BTC"}, "same asset"),
        ({"tick_size": "0"}, "positive"),
        ({"tick_size": "1e-2"}, "plain decimal"),
        ({"lot_size": "-0.1"}, "plain decimal"),
        ({"min_qty": "0.00015"}, "lot grid"),
        ({"min_qty": "2000"}, "min <= max"),
        ({"max_qty": "0"}, "lot grid"),
        ({"reference_price": "50000.005"}, "tick grid"),
        ({"price_band_pct": 0}, "1..100"),
        ({"price_band_pct": 101}, "1..100"),
        ({"maker_fee_bps": -1}, "0..9999"),
        ({"taker_fee_bps": 10_000}, "0..9999"),
        ({"tick_size": "0.0000001"}, "decimals too small"),
        ({"lot_size": "0.000000001"}, "decimals too small"),
        ({"price_band_pct": "10"}, "price_band_pct"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_instrument(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(variant(**changes))


def test_bad_top_level_configs() -> None:
    with pytest.raises(ConfigError):
        parse_config({"assets": {}, "instruments": []})
    with pytest.raises(ConfigError):
        parse_config({"instruments": []})
    with pytest.raises(ConfigError, match="decimals"):
        parse_config({**BASE, "assets": {"USD": {"decimals": 19}, "BTC": {"decimals": 8}}})
    with pytest.raises(ConfigError, match="decimals"):
        parse_config({**BASE, "assets": {"USD": {}, "BTC": {"decimals": 8}}})
    data = copy.deepcopy(BASE)
    data["instruments"].append(copy.deepcopy(data["instruments"][0]))
    with pytest.raises(ConfigError, match="twice"):
        parse_config(data)
    with pytest.raises(ConfigError, match="table"):
        parse_config({**BASE, "instruments": ["BTC-USD"]})


def test_load_config_from_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[assets\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text(
        '[assets.USD]\ndecimals = 2\n[assets.XAU]\ndecimals = 3\n[[instruments]]\n'
        'symbol = "XAU-USD"\nbase = "XAU"\nquote = "USD"\ntick_size = "1"\nlot_size = "0.1"\n'
        'min_qty = "0.1"\nmax_qty = "10"\nprice_band_pct = 5\nmaker_fee_bps = 0\n'
        'taker_fee_bps = 5\nreference_price = "2000"\n'
    )
    cfg = load_config(good)
    xau = cfg.instruments["XAU-USD"]
    assert (xau.base_units_per_lot, xau.quote_units_per_tick_lot) == (100, 10)
    assert cfg.asset_to_units("USD", "1.25") == 125
    assert cfg.asset_to_units("USD", "0") is None
    assert cfg.asset_to_units("EUR", "1") is None
    assert cfg.units_to_asset("USD", 125) == "1.25"


def test_band_matches_the_engine_check_at_its_edges() -> None:
    inst = load_config().instruments["BTC-USD"]
    assert inst.band(0) == (inst.reference_ticks, 4_500_000, 5_500_000)
    for ref in (3, 7, 99, 101, 12_345, 5_000_001):
        for pct in (1, 7, 10, 33, 100):
            odd = msgspec.structs.replace(inst, price_band_pct=pct)
            got_ref, low, high = odd.band(ref)
            assert got_ref == ref

            def accepted(price: int, ref: int = ref, pct: int = pct) -> bool:
                return abs(price - ref) * 100 <= ref * pct  # as exchange.engine.placing

            assert accepted(low) and not accepted(low - 1)
            assert accepted(high) and not accepted(high + 1)
