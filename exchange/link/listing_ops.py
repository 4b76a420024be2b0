"""Listing over a matcher link: new assets, new instruments, new live parameters; shared by
`exchange admin` and the gateway's admin HTTP API.

Inputs are checked here first against the matcher's live set (`client.welcome.config`, kept
current by the link): a bad one raises `AdminError` (1002 with what is wrong, 1003 for an
unknown symbol, 3011 for one already listed) and nothing is sent. The engine checks the same
again when it applies the journaled command (exchange.engine.listing), with the same rules
as a config file (`exchange.model.instruments.derive_instrument`).
"""

from __future__ import annotations

from typing import Any

from exchange.link.admin_ops import AdminError, run_command
from exchange.link.client import LinkClient
from exchange.model.codes import Code
from exchange.model.commands import ListAsset, ListInstrument, UpdateInstrument
from exchange.model.events import AssetListed, InstrumentListed, InstrumentUpdated
from exchange.model.instruments import (
    CONFIG_FIELDS,
    Asset,
    ConfigError,
    Instrument,
    check_asset,
    derive_instrument,
)

# The fields of an instrument that are integers; the other written fields are strings.
_INT_FIELDS = ("price_band_pct", "maker_fee_bps", "taker_fee_bps")
# What update-instrument may change: the live parameters. The rest is immutable.
UPDATABLE_FIELDS = ("price_band_pct", "maker_fee_bps", "taker_fee_bps", "min_qty", "max_qty",
                    "reference_price")


def _typed(fields: dict[str, object]) -> None:
    for name, value in fields.items():
        want = int if name in _INT_FIELDS else str
        if type(value) is not want:
            raise AdminError(Code.INVALID_VALUE, f"'{name}' must be "
                             f"{'an integer' if want is int else 'a decimal string'}")


def instrument_view(inst: Instrument) -> dict[str, Any]:
    """An instrument as the operator wrote it (its symbol and written fields)."""
    return {"symbol": inst.symbol, **{f: getattr(inst, f) for f in CONFIG_FIELDS}}


async def list_asset(client: LinkClient, asset: str, decimals: object) -> Asset:
    try:
        checked = check_asset(asset, decimals)
    except ConfigError as exc:
        raise AdminError(Code.INVALID_VALUE, str(exc)) from None
    if checked.name in client.welcome.config.assets:
        raise AdminError(Code.ALREADY_LISTED, f"asset {asset} is already listed")
    command = ListAsset(asset=checked.name, decimals=checked.decimals)
    event = await run_command(client, command)
    if not isinstance(event, AssetListed):
        raise AdminError(Code.INTERNAL, f"unexpected answer {type(event).__name__}")
    return event.asset


async def list_instrument(client: LinkClient, fields: dict[str, object]) -> Instrument:
    """List an instrument from its symbol and every written field (CONFIG_FIELDS)."""
    unknown = sorted(set(fields) - {"symbol", *CONFIG_FIELDS})
    missing = [f for f in ("symbol", *CONFIG_FIELDS) if f not in fields]
    if unknown or missing:
        raise AdminError(Code.INVALID_VALUE, f"an instrument needs exactly symbol and "
                         f"{', '.join(CONFIG_FIELDS)} (unknown: {unknown}, missing: {missing})")
    _typed(fields)
    config = client.welcome.config
    symbol = fields["symbol"]
    if symbol in config.instruments:
        raise AdminError(Code.ALREADY_LISTED, f"instrument {symbol} is already listed")
    try:
        derive_instrument(fields, config.assets)
    except ConfigError as exc:
        raise AdminError(Code.INVALID_VALUE, str(exc)) from None
    command = ListInstrument(**fields)  # type: ignore[arg-type]  # checked just above
    event = await run_command(client, command)
    if not isinstance(event, InstrumentListed):
        raise AdminError(Code.INTERNAL, f"unexpected answer {type(event).__name__}")
    return event.instrument


async def update_instrument(
    client: LinkClient, symbol: str, changes: dict[str, object]
) -> Instrument:
    """New live parameters (UPDATABLE_FIELDS) for a listed instrument."""
    config = client.welcome.config
    old = config.instruments.get(symbol)
    if old is None:
        raise AdminError(Code.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r} "
                         f"(listed: {', '.join(sorted(config.instruments))})")
    immutable = sorted(set(changes) & {"base", "quote", "tick_size", "lot_size"})
    if immutable:
        raise AdminError(Code.INVALID_VALUE, f"{', '.join(immutable)} of a listed instrument "
                         "cannot change: its stored prices and sizes mean them")
    unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
    if unknown:
        raise AdminError(Code.INVALID_VALUE, f"unknown fields {unknown}; an update may set "
                         f"{', '.join(UPDATABLE_FIELDS)}")
    if not changes:
        raise AdminError(Code.INVALID_VALUE, f"instrument {symbol}: nothing to change; set "
                         f"any of {', '.join(UPDATABLE_FIELDS)}")
    _typed(changes)
    raw: dict[str, object] = instrument_view(old)
    raw.update(changes)
    try:
        derive_instrument(raw, config.assets)
    except ConfigError as exc:
        raise AdminError(Code.INVALID_VALUE, str(exc)) from None
    command = UpdateInstrument(symbol=symbol, **changes)  # type: ignore[arg-type]
    event = await run_command(client, command)
    if not isinstance(event, InstrumentUpdated):
        raise AdminError(Code.INTERNAL, f"unexpected answer {type(event).__name__}")
    return event.instrument
