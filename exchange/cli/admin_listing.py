"""`exchange admin` listing commands: assets, instruments and their live parameters.

    exchange admin --matcher ADDR instruments
    exchange admin --matcher ADDR list-asset --asset SOL --decimals 9
    exchange admin --matcher ADDR list-instrument --symbol SOL-USD --base SOL --quote USD \\
        --tick-size 0.01 --lot-size 0.01 --min-qty 0.01 --max-qty 10000 \\
        --price-band-pct 10 --maker-fee-bps 10 --taker-fee-bps 20 --reference-price 150.00
    exchange admin --matcher ADDR update-instrument SOL-USD [--price-band-pct N]
        [--maker-fee-bps N] [--taker-fee-bps N] [--min-qty Q] [--max-qty Q]
        [--reference-price P]

Each is a command journaled by the matcher (exchange.link.listing_ops), applied live: every
connected gateway learns the new set at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from exchange.link import listing_ops
from exchange.link.client import LinkClient
from exchange.model.instruments import CONFIG_FIELDS

COMMANDS = ("instruments", "list-asset", "list-instrument", "update-instrument")
_INT_FIELDS = ("price_band_pct", "maker_fee_bps", "taker_fee_bps")


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_listing_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """The listing subcommands, on the `exchange admin` subparsers `sub`."""
    sub.add_parser("instruments", help="the live assets and instruments", parents=[common])
    p = sub.add_parser("list-asset", help="list a new asset (every account gets 0 of it)",
                       parents=[common])
    p.add_argument("--asset", required=True)
    p.add_argument("--decimals", type=int, required=True,
                   help="decimals of the smallest balance unit, 0..18")
    p = sub.add_parser("list-instrument", help="list a new instrument, live",
                       parents=[common])
    p.add_argument("--symbol", required=True)
    for field in CONFIG_FIELDS:
        p.add_argument(_option(field), dest=field, required=True,
                       type=int if field in _INT_FIELDS else str)
    p = sub.add_parser("update-instrument", help="change an instrument's band, fees, limits "
                       "or reference price, live", parents=[common])
    p.add_argument("symbol")
    for field in listing_ops.UPDATABLE_FIELDS:
        p.add_argument(_option(field), dest=field, default=None,
                       type=int if field in _INT_FIELDS else str)


async def execute_listing(client: LinkClient, args: argparse.Namespace) -> dict[str, Any]:
    match args.admin_command:
        case "list-asset":
            asset = await listing_ops.list_asset(client, args.asset, args.decimals)
            return {"asset": asset.name, "decimals": asset.decimals}
        case "list-instrument":
            fields: dict[str, object] = {"symbol": args.symbol}
            fields.update((f, getattr(args, f)) for f in CONFIG_FIELDS)
            return listing_ops.instrument_view(await listing_ops.list_instrument(client, fields))
        case "update-instrument":
            changes: dict[str, object] = {
                f: getattr(args, f) for f in listing_ops.UPDATABLE_FIELDS
                if getattr(args, f) is not None
            }
            inst = await listing_ops.update_instrument(client, args.symbol, changes)
            return listing_ops.instrument_view(inst)
    config = client.welcome.config
    return {
        "assets": [{"asset": a.name, "decimals": a.decimals} for a in config.assets.values()],
        "instruments": [listing_ops.instrument_view(i) for i in config.instruments.values()],
    }
