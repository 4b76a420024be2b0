"""Listing commands: new assets and instruments, new live parameters; every refusal changes
nothing; snapshots carry the live set."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from exchange.engine.core import Engine
from exchange.engine.state import DECODER, ENCODER
from exchange.model.commands import (
    CreateAccount,
    Deposit,
    ListAsset,
    ListInstrument,
    UpdateInstrument,
)
from exchange.model.events import (
    AssetListed,
    CommandRejected,
    Event,
    InstrumentListed,
    InstrumentUpdated,
    OrderAccepted,
    OrderRejected,
    TradeExecuted,
)
from tests.exchange.conftest import CONFIG, REF, Driver, business_hash, kinds

SOL: dict[str, Any] = {
    "symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tick_size": "0.01",
    "lot_size": "0.01", "min_qty": "0.01", "max_qty": "10000", "price_band_pct": 10,
    "maker_fee_bps": 10, "taker_fee_bps": 20, "reference_price": "150.00",
}


def list_sol(ex: Driver) -> None:
    assert kinds(ex.do(ListAsset(asset="SOL", decimals=9))) == ["AssetListed"]
    assert kinds(ex.do(ListInstrument(**SOL))) == ["InstrumentListed"]


def refused(ex: Driver, command: Any, code: int) -> CommandRejected:
    """Apply `command`; it must be refused with `code` and change nothing but the seq."""
    before = business_hash(ex.engine)
    config = ex.engine.config.copy()
    events = ex.do(command)
    assert kinds(events) == ["CommandRejected"], events
    event = events[0]
    assert isinstance(event, CommandRejected) and event.code == code, event
    assert business_hash(ex.engine) == before
    assert ex.engine.config == config
    return event


def test_engine_keeps_its_own_copy_of_the_config(ex: Driver) -> None:
    list_sol(ex)
    assert "SOL-USD" in ex.engine.config.instruments
    assert "SOL-USD" not in CONFIG.instruments and "SOL" not in CONFIG.assets


def test_a_listed_asset_is_in_every_account_at_zero(ex: Driver) -> None:
    events = ex.do(ListAsset(asset="SOL", decimals=9))
    assert isinstance(events[0], AssetListed) and events[0].asset.decimals == 9
    for account in (0, 1, 2, 3):
        assert ex.bal(account, "SOL") == (0, 0)
    ex.do(CreateAccount(label="late"))
    assert ex.bal(4, "SOL") == (0, 0)
    assert kinds(ex.do(Deposit(account_id=1, asset="SOL", amount=5 * 10**9))) == ["Deposited"]
    assert ex.bal(1, "SOL") == (5 * 10**9, 0)


@pytest.mark.parametrize(("asset", "decimals", "code"), [
    ("USD", 6, 3011), ("SOL", 19, 1002), ("SOL", -1, 1002), ("", 8, 1002),
    ("bad name", 8, 1002), ("x" * 33, 8, 1002),
])
def test_bad_asset_listing_changes_nothing(ex: Driver, asset: str, decimals: int,
                                           code: int) -> None:
    refused(ex, ListAsset(asset=asset, decimals=decimals), code)


def test_a_listed_instrument_trades_at_once(ex: Driver) -> None:
    list_sol(ex)
    for account in (1, 2):
        ex.do(Deposit(account_id=account, asset="SOL", amount=100 * 10**9))
    ref = 15_000  # 150.00 in ticks of 0.01
    sell = ex.place(account=1, side="sell", qty=300, price=ref, symbol="SOL-USD")
    assert isinstance(sell[0], OrderAccepted)
    buy = ex.place(account=2, side="buy", qty=100, price=ref, symbol="SOL-USD")
    trades = [e for e in buy if isinstance(e, TradeExecuted)]
    assert [(t.symbol, t.price, t.qty, t.trade_id) for t in trades] == [
        ("SOL-USD", ref, 100, 1)]
    # 1 SOL (100 lots of 0.01) at 150.00: the buyer gets 1 SOL less a 20 bps taker fee.
    assert ex.bal(2, "SOL")[0] == 100 * 10**9 + 10**9 - 10**9 * 20 // 10_000
    assert ex.bal(2, "USD")[0] == 10**12 - 150 * 10**6
    assert ex.book("SOL-USD") == ([], [(ref, 200)])


@pytest.mark.parametrize(("change", "code"), [
    ({"symbol": "BTC-USD", "base": "BTC"}, 3011),
    ({"base": "DOGE"}, 1002),  # unknown asset
    ({"base": "USD"}, 1002),  # base and quote the same
    ({"tick_size": "0.0001", "lot_size": "0.001"}, 1002),  # tick*lot below a quote unit
    ({"tick_size": "0"}, 1002),
    ({"tick_size": "1e-2"}, 1002),
    ({"price_band_pct": 0}, 1002),
    ({"price_band_pct": 101}, 1002),
    ({"maker_fee_bps": 10_000}, 1002),
    ({"taker_fee_bps": -1}, 1002),
    ({"min_qty": "20000"}, 1002),  # min > max
    ({"min_qty": "0.015"}, 1002),  # off the lot grid
    ({"reference_price": "150.005"}, 1002),  # off the tick grid
    ({"reference_price": "0"}, 1002),
    ({"symbol": "SOL/USD"}, 1002),
    ({"symbol": ""}, 1002),
])
def test_bad_instrument_listing_changes_nothing(ex: Driver, change: dict[str, Any],
                                                code: int) -> None:
    ex.do(ListAsset(asset="SOL", decimals=9))
    event = refused(ex, ListInstrument(**{**SOL, **change}), code)
    assert event.reason  # says what is wrong


def test_a_second_listing_of_the_same_symbol_is_refused(ex: Driver) -> None:
    list_sol(ex)
    refused(ex, ListInstrument(**{**SOL, "reference_price": "10.00"}), 3011)


def test_a_new_band_applies_to_the_next_order(ex: Driver) -> None:
    inside = REF * 108 // 100  # inside 10%, outside 5%
    assert isinstance(ex.place(account=1, side="buy", qty=1, price=inside)[0], OrderAccepted)
    events = ex.do(UpdateInstrument(symbol="BTC-USD", price_band_pct=5))
    assert isinstance(events[0], InstrumentUpdated)
    assert events[0].instrument.price_band_pct == 5
    assert ex.engine.config.instruments["BTC-USD"].price_band_pct == 5
    rejected = ex.place(account=1, side="buy", qty=1, price=inside)[0]
    assert isinstance(rejected, OrderRejected)
    assert (rejected.code, rejected.band_reference) == (3002, REF)
    # The order resting from before keeps its price.
    assert ex.book()[0] == [(inside, 1)]


def test_new_fees_limits_and_reference_price(ex: Driver) -> None:
    ex.do(UpdateInstrument(symbol="BTC-USD", maker_fee_bps=0, taker_fee_bps=50,
                           max_qty="0.0005", reference_price="40000.00"))
    inst = ex.engine.config.instruments["BTC-USD"]
    assert (inst.maker_fee_bps, inst.taker_fee_bps, inst.max_lots) == (0, 50, 5)
    assert inst.reference_ticks == 4_000_000 and inst.reference_price == "40000.00"
    too_big = ex.place(account=1, side="buy", qty=6, price=4_000_000)[0]
    assert isinstance(too_big, OrderRejected) and too_big.code == 1002
    # 50000.00 is now 25% over the reference: outside the band.
    band = ex.place(account=1, side="buy", qty=1, price=REF)[0]
    assert isinstance(band, OrderRejected) and band.code == 3002
    ex.place(account=1, side="sell", qty=5, price=4_000_000)
    fills = ex.place(account=2, side="buy", qty=5, price=4_000_000)
    fees = {e.liquidity: e.fee for e in fills if type(e).__name__ == "OrderFilled"}  # type: ignore[attr-defined]
    # Taker buys 5 lots of 0.0001 BTC = 50,000 sat, pays 50 bps in BTC; the maker pays none.
    assert fees == {"taker": 250, "maker": 0}


@pytest.mark.parametrize(("change", "code"), [
    ({"symbol": "NOPE-USD", "price_band_pct": 5}, 1003),
    ({}, 1002),  # nothing to change
    ({"price_band_pct": 0}, 1002),
    ({"price_band_pct": 101}, 1002),
    ({"maker_fee_bps": 10_000}, 1002),
    ({"min_qty": "2000"}, 1002),  # over max
    ({"max_qty": "0.00015"}, 1002),  # off the lot grid
    ({"reference_price": "50000.001"}, 1002),
    ({"reference_price": "-1"}, 1002),
])
def test_bad_update_changes_nothing(ex: Driver, change: dict[str, Any], code: int) -> None:
    refused(ex, UpdateInstrument(**{"symbol": "BTC-USD", **change}), code)


def test_tick_lot_and_assets_of_a_listed_instrument_cannot_be_updated() -> None:
    for field in ("tick_size", "lot_size", "base", "quote"):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"symbol": "BTC-USD", field: "1"}, UpdateInstrument)


def stop_market_buy(ex: Driver, account: int, qty: int, stop: int) -> list[Event]:
    return ex.place(account=account, side="buy", qty=qty, price=None, order_type="stop_market",
                    stop_price=stop)


def test_a_new_band_moves_the_holds_of_waiting_stop_market_buys(ex: Driver) -> None:
    stop = REF + 100
    assert isinstance(stop_market_buy(ex, 1, 10, stop)[0], OrderAccepted)
    held = ex.bal(1, "USD")[1]
    assert held == stop * 110 // 100 * 10 * 1  # quote_units_per_tick_lot is 1 for BTC-USD
    ex.do(UpdateInstrument(symbol="BTC-USD", price_band_pct=20))
    assert ex.bal(1, "USD") == (10**12 - stop * 120 // 100 * 10, stop * 120 // 100 * 10)
    ex.do(UpdateInstrument(symbol="BTC-USD", price_band_pct=2))
    assert ex.bal(1, "USD")[1] == stop * 102 // 100 * 10
    # Canceled, it releases exactly what it holds now.
    ex.cancel(account=1, order_id=1)
    assert ex.bal(1, "USD") == (10**12, 0)


def test_a_band_a_stop_buyer_cannot_cover_is_refused(ex: Driver) -> None:
    ex.do(CreateAccount(label="small"))
    stop = REF + 100
    qty = 100  # 0.01 BTC: holds ~550 USD at a 10% band
    need = stop * 110 // 100 * qty
    ex.do(Deposit(account_id=4, asset="USD", amount=need))
    assert isinstance(stop_market_buy(ex, 4, qty, stop)[0], OrderAccepted)
    assert ex.bal(4, "USD") == (0, need)
    event = refused(ex, UpdateInstrument(symbol="BTC-USD", price_band_pct=20), 3001)
    assert "stop" in event.reason
    # Narrower is always covered.
    assert kinds(ex.do(UpdateInstrument(symbol="BTC-USD", price_band_pct=5))) == [
        "InstrumentUpdated"]


def test_snapshot_carries_the_live_set(ex: Driver) -> None:
    list_sol(ex)
    ex.do(UpdateInstrument(symbol="BTC-USD", price_band_pct=7, reference_price="51000.00"))
    ex.do(Deposit(account_id=1, asset="SOL", amount=10**9))
    ex.place(account=1, side="sell", qty=50, price=15_000, symbol="SOL-USD")
    data = ex.engine.snapshot()
    restored = Engine.restore(CONFIG, data)  # the initial config, as a restart gives it
    restored.validate()
    assert restored.snapshot() == data
    assert restored.config == ex.engine.config
    assert restored.config.instruments["BTC-USD"].price_band_pct == 7
    # The same commands after it give the same events.
    cmd = ListInstrument(**{**SOL, "symbol": "SOL-BTC", "quote": "BTC", "tick_size": "0.000001",
                            "reference_price": "0.002000"})
    a = ex.engine.apply(cmd, ex.seq + 1, 1)
    b = restored.apply(cmd, ex.seq + 1, 1)
    assert ENCODER.encode(a) == ENCODER.encode(b) and isinstance(a[0], InstrumentListed)
    assert restored.state_hash() == ex.engine.state_hash()


def test_a_version_2_snapshot_still_loads_with_its_config(ex: Driver) -> None:
    ex.place(account=1, side="buy", qty=3, price=REF)
    state = DECODER.decode(ex.engine.snapshot())
    # Version 2 wrote the same array without the last two fields (assets, instruments).
    fields = msgspec.msgpack.decode(ENCODER.encode(msgspec.structs.replace(state, version=2)))
    v2 = msgspec.msgpack.encode(fields[:-2])
    restored = Engine.restore(CONFIG, v2)
    restored.validate()
    assert restored.config == ex.engine.config
    assert restored.state_hash() == ex.engine.state_hash()


def test_a_snapshot_refuses_a_config_that_means_its_integers_otherwise(ex: Driver) -> None:
    from exchange.model.instruments import parse_config

    raw: dict[str, Any] = msgspec.to_builtins(CONFIG)
    raw["instruments"] = [
        {k: v for k, v in i.items() if k in {"symbol", *SOL}} for i in raw["instruments"].values()
    ]
    raw["assets"] = {n: {"decimals": a["decimals"]} for n, a in raw["assets"].items()}
    raw["instruments"][0]["tick_size"] = "0.1"
    raw["instruments"][0]["reference_price"] = "50000.0"
    other = parse_config(raw)
    with pytest.raises(ValueError, match="tick_size"):
        Engine.restore(other, ex.engine.snapshot())
