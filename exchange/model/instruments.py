"""Instruments and assets: loaded from TOML, validated, and the integer scales derived from them.

Inside the engine a price is a count of ticks and a quantity a count of lots. Balances are
counts of the asset's smallest unit (10**-decimals). For an instrument:
- one lot is `base_units_per_lot` base units;
- `price_ticks * qty_lots * quote_units_per_tick_lot` is the exact notional in quote units.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import TypeVar

import msgspec

from exchange.model.numbers import (
    MAX_UNITS,
    decimals_of,
    format_units,
    parse_steps,
    parse_units,
)


class ConfigError(ValueError):
    """The instrument configuration is not usable."""


# Symbols and asset names appear in URLs, Redis channels (md:<symbol>) and FIX tags: letters,
# digits and a few separators, bounded.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
MAX_ASSET_DECIMALS = 18

# The fields an instrument is written with (the TOML's, a ListInstrument's); the rest of
# `Instrument` is derived from them.
CONFIG_FIELDS = ("base", "quote", "tick_size", "lot_size", "min_qty", "max_qty",
                 "price_band_pct", "maker_fee_bps", "taker_fee_bps", "reference_price")
# What gives an instrument's stored integers (ticks, lots, units) their meaning: never changed
# once listed. The other fields are its live parameters (UpdateInstrument).
IMMUTABLE_FIELDS = ("base", "quote", "tick_size", "lot_size")


class Asset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    decimals: int


class Instrument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    price_band_pct: int
    maker_fee_bps: int
    taker_fee_bps: int
    reference_price: str
    # Derived at load time (see load_config); kept in the struct so that the gateway gets
    # them from the matcher's handshake with nothing to recompute.
    price_decimals: int = 0
    qty_decimals: int = 0
    tick_units: int = 1
    lot_units: int = 1
    min_lots: int = 1
    max_lots: int = 1
    reference_ticks: int = 1
    base_units_per_lot: int = 1
    quote_units_per_tick_lot: int = 1

    def band(self, last_price: int) -> tuple[int, int, int]:
        """(reference, low, high) in ticks: the band orders must be priced in.

        The reference is the last trade's price, or `reference_price` before the first; a
        limit price p is accepted when |p - reference| <= reference * price_band_pct / 100
        (the engine's check), so low rounds up and high rounds down.
        """
        ref = last_price or self.reference_ticks
        pct = self.price_band_pct
        return ref, -((-ref * (100 - pct)) // 100), ref * (100 + pct) // 100

    # Edge conversions. `None` means "reject with 1002"; callers never round.
    def price_to_ticks(self, text: object) -> int | None:
        return parse_steps(text, self.tick_units, self.price_decimals)

    def qty_to_lots(self, text: object) -> int | None:
        return parse_steps(text, self.lot_units, self.qty_decimals)

    def ticks_to_price(self, ticks: int) -> str:
        return format_units(ticks * self.tick_units, self.price_decimals)

    def lots_to_qty(self, lots: int) -> str:
        return format_units(lots * self.lot_units, self.qty_decimals)


_T = TypeVar("_T")


def _sync(mine: dict[str, _T], theirs: dict[str, _T]) -> None:
    for name in [n for n in mine if n not in theirs]:
        del mine[name]
    mine.update(theirs)


class ExchangeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Assets and instruments by name. A config file gives the initial set; the engine's own
    copy is the live set, which journaled commands extend and change (ListAsset,
    ListInstrument, UpdateInstrument). A gateway keeps the matcher's in one object whose
    dicts it updates in place (`refresh`), so every transport holding it sees a change."""

    assets: dict[str, Asset]
    instruments: dict[str, Instrument]

    def copy(self) -> ExchangeConfig:
        """A config with dicts of its own (the instruments themselves are frozen)."""
        return ExchangeConfig(assets=dict(self.assets), instruments=dict(self.instruments))

    def refresh(self, other: ExchangeConfig) -> None:
        """Make this config's dicts equal to `other`'s, in place."""
        _sync(self.assets, other.assets)
        _sync(self.instruments, other.instruments)

    def asset_to_units(self, asset: str, text: object) -> int | None:
        """A positive asset amount as integer units (at most MAX_UNITS), or None."""
        spec = self.assets.get(asset)
        if spec is None:
            return None
        units = parse_units(text, spec.decimals)
        return units if units is not None and 0 < units <= MAX_UNITS else None

    def units_to_asset(self, asset: str, units: int) -> str:
        return format_units(units, self.assets[asset].decimals)


def check_asset(name: object, decimals: object) -> Asset:
    """An asset from its name and decimals, or ConfigError saying what is wrong."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"asset {name!r}: a name is 1-32 letters, digits, '.', '_' or '-'")
    if type(decimals) is not int:
        raise ConfigError(f"asset {name}: needs an integer 'decimals'")
    if not 0 <= decimals <= MAX_ASSET_DECIMALS:
        raise ConfigError(f"asset {name}: decimals must be in 0..{MAX_ASSET_DECIMALS}")
    return Asset(name=name, decimals=decimals)


def derive_instrument(raw: dict[str, object], assets: dict[str, Asset]) -> Instrument:
    """An instrument from its written fields (symbol and CONFIG_FIELDS), checked and with its
    integer scales derived; ConfigError names the instrument and what is wrong. Pure: the
    engine uses it to apply ListInstrument and UpdateInstrument exactly as a config loads."""
    try:
        inst = msgspec.convert(raw, Instrument)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"instrument {raw.get('symbol')!r}: {exc}") from exc
    where = f"instrument {inst.symbol}"
    if not NAME.fullmatch(inst.symbol):
        raise ConfigError(f"{where}: a symbol is 1-32 letters, digits, '.', '_' or '-'")
    for asset in (inst.base, inst.quote):
        if asset not in assets:
            raise ConfigError(f"{where}: unknown asset {asset}")
    if inst.base == inst.quote:
        raise ConfigError(f"{where}: base and quote are the same asset")
    try:
        price_decimals = decimals_of(inst.tick_size)
        qty_decimals = decimals_of(inst.lot_size)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    tick_units = parse_units(inst.tick_size, price_decimals)
    lot_units = parse_units(inst.lot_size, qty_decimals)
    if not tick_units or not lot_units:
        raise ConfigError(f"{where}: tick_size and lot_size must be positive")
    min_lots = parse_steps(inst.min_qty, lot_units, qty_decimals)
    max_lots = parse_steps(inst.max_qty, lot_units, qty_decimals)
    ref = parse_steps(inst.reference_price, tick_units, price_decimals)
    if min_lots is None or max_lots is None or min_lots > max_lots:
        raise ConfigError(f"{where}: min_qty/max_qty must be on the lot grid, min <= max")
    if ref is None:
        raise ConfigError(f"{where}: reference_price must be on the tick grid")
    if not 0 < inst.price_band_pct <= 100:
        raise ConfigError(f"{where}: price_band_pct must be in 1..100")
    for fee in (inst.maker_fee_bps, inst.taker_fee_bps):
        if not 0 <= fee < 10_000:
            raise ConfigError(f"{where}: fees must be in 0..9999 bps")
    base_dec = assets[inst.base].decimals
    quote_dec = assets[inst.quote].decimals
    # lot_size * 10**base_dec and tick_size * lot_size * 10**quote_dec must be integers.
    lot_scale = base_dec - qty_decimals
    notional_scale = quote_dec - price_decimals - qty_decimals
    if lot_scale < 0 or notional_scale < 0:
        raise ConfigError(
            f"{where}: asset decimals too small for tick_size/lot_size "
            f"(need {inst.base} >= {qty_decimals}, {inst.quote} >= "
            f"{price_decimals + qty_decimals})"
        )
    return msgspec.structs.replace(
        inst,
        price_decimals=price_decimals,
        qty_decimals=qty_decimals,
        tick_units=tick_units,
        lot_units=lot_units,
        min_lots=min_lots,
        max_lots=max_lots,
        reference_ticks=ref,
        base_units_per_lot=lot_units * 10**lot_scale,
        quote_units_per_tick_lot=tick_units * lot_units * 10**notional_scale,
    )


def parse_config(data: dict[str, object]) -> ExchangeConfig:
    raw_assets = data.get("assets")
    raw_instruments = data.get("instruments")
    if not isinstance(raw_assets, dict) or not isinstance(raw_instruments, list):
        raise ConfigError("config needs [assets.NAME] tables and [[instruments]] entries")
    assets: dict[str, Asset] = {}
    for name, spec in raw_assets.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"asset {name}: needs an integer 'decimals'")
        assets[name] = check_asset(name, spec.get("decimals"))
    instruments: dict[str, Instrument] = {}
    for raw in raw_instruments:
        if not isinstance(raw, dict):
            raise ConfigError("each [[instruments]] entry must be a table")
        inst = derive_instrument(raw, assets)
        if inst.symbol in instruments:
            raise ConfigError(f"instrument {inst.symbol}: defined twice")
        instruments[inst.symbol] = inst
    if not instruments:
        raise ConfigError("config defines no instruments")
    return ExchangeConfig(assets=assets, instruments=instruments)


def load_config(path: str | Path | None = None) -> ExchangeConfig:
    """Load a TOML config file, or the packaged default when `path` is None."""
    if path is None:
        text = resources.files("exchange.config").joinpath("default.toml").read_text()
    else:
        text = Path(path).read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    return parse_config(data)
