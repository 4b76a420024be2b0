"""Instrument parameters recorded with the state: a config that changes them is refused in one
line, at start-up, before anything is read or written."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from exchange.matcher.params import RECORD, ParamsChanged, check_or_record
from exchange.model.instruments import ExchangeConfig, parse_config


def default_raw() -> dict[str, Any]:
    text = resources.files("exchange.config").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def with_change(change: dict[str, Any], symbol: str = "BTC-USD") -> ExchangeConfig:
    raw = default_raw()
    for inst in raw["instruments"]:
        if inst["symbol"] == symbol:
            inst.update(change)
    return parse_config(raw)


def test_first_start_records_and_same_config_passes(tmp_path: Path) -> None:
    config = parse_config(default_raw())
    check_or_record(tmp_path, config)
    written = (tmp_path / RECORD).read_text()
    assert '"tick_size": "0.01"' in written
    check_or_record(tmp_path, config)
    assert (tmp_path / RECORD).read_text() == written


@pytest.mark.parametrize(("change", "phrase"), [
    ({"tick_size": "0.10", "reference_price": "50000.00"},
     "changes BTC-USD tick_size from 0.01 to 0.10"),
    ({"lot_size": "0.001", "min_qty": "0.001"}, "changes BTC-USD lot_size from 0.0001 to 0.001"),
    ({"maker_fee_bps": 5}, "changes BTC-USD maker_fee_bps from 10 to 5"),
    ({"price_band_pct": 20}, "changes BTC-USD price_band_pct from 10 to 20"),
])
def test_changed_parameter_refused_in_one_line(tmp_path: Path, change: dict[str, Any],
                                               phrase: str) -> None:
    check_or_record(tmp_path, parse_config(default_raw()))
    with pytest.raises(ParamsChanged) as info:
        check_or_record(tmp_path, with_change(change))
    message = str(info.value)
    assert phrase in message and "\n" not in message
    assert f"recorded in {tmp_path / RECORD}" in message


def test_dropped_instrument_and_asset_decimals_refused(tmp_path: Path) -> None:
    check_or_record(tmp_path, parse_config(default_raw()))
    raw = default_raw()
    raw["instruments"] = [i for i in raw["instruments"] if i["symbol"] != "ETH-BTC"]
    with pytest.raises(ParamsChanged, match="drops instrument ETH-BTC"):
        check_or_record(tmp_path, parse_config(raw))
    raw = default_raw()
    raw["assets"]["USD"]["decimals"] = 8
    with pytest.raises(ParamsChanged, match="changes USD decimals from 6 to 8"):
        check_or_record(tmp_path, parse_config(raw))
