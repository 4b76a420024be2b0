"""`exchange admin`: operator commands against a matcher; prints one JSON document.

    exchange admin --matcher unix:/run/exchange/matcher.sock create-account [--label L]
    exchange admin --matcher ADDR create-key --account N [--permissions trade,read]
    exchange admin --matcher ADDR create-key --account N --ed25519-public-key HEX_OR_BASE64
    exchange admin --matcher ADDR revoke-key --key API_KEY
    exchange admin --matcher ADDR set-key-limits --key API_KEY [--orders N] [--requests N]
    exchange admin --matcher ADDR show-key --key API_KEY
    exchange admin --matcher ADDR deposit --account N --asset USD --amount 100.5
    exchange admin --matcher ADDR withdraw --account N --asset USD --amount 1
    exchange admin --matcher ADDR halt BTC-USD | resume BTC-USD
    exchange admin --matcher ADDR balances --account N
    exchange admin --matcher ADDR instruments | list-asset ... | list-instrument ...
    exchange admin --matcher ADDR update-instrument SYMBOL --price-band-pct 5 ...
      (listing: exchange/cli/admin_listing.py)

--matcher defaults to $EXCHANGE_MATCHER and may come before or after the command. create-key
seals the new secret with the key ring of --secrets-key-file (default
$EXCHANGE_SECRETS_KEY_FILE or $EXCHANGE_SECRETS_KEY); an Ed25519 key needs none, the exchange
stores only its public key.

A key's rate-limit tier: `--orders N` is the key's order budget (all its sessions together,
WebSocket and FIX), `--requests N` each of its WebSocket connections' request budget, both per
the gateway's window (`--order-window-ms`, `--request-window-ms`), 1..1000000, or `default`
for the gateway's own limit. create-key takes them as `--orders-limit` / `--requests-limit`.
Output shows a limit left at the gateway's default as null.

Exit code 0 on success; 1 with a JSON error on stderr ({"error": {"code", "msg"}}) when
refused; 2 when the matcher cannot be reached (nothing was sent: code 5002, "cannot reach the
matcher") or the link drops after the command was sent (code 5001: the outcome of a state
change is then unknown, check with `balances`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from exchange import credentials
from exchange.cli.admin_listing import COMMANDS as LISTING_COMMANDS
from exchange.cli.admin_listing import add_listing_commands, execute_listing
from exchange.link import admin_ops
from exchange.link.admin_ops import AdminError
from exchange.link.auth import LinkTokenError, load_token, process_link_token, use_link_token
from exchange.link.client import LinkClient, LinkDown
from exchange.link.codec import parse_address
from exchange.logs import configure_logging
from exchange.model.instruments import ExchangeConfig

MATCHER_HELP = "matcher link address, unix:/path or tcp:host:port (default: $EXCHANGE_MATCHER)"
ORDERS_LIMIT_HELP = ("orders per the gateway's order window for the key's sessions together, "
                     "1..1000000, or 'default' for the gateway's limit")
REQUESTS_LIMIT_HELP = ("requests per the gateway's request window for each WebSocket "
                       "connection of the key, 1..1000000, or 'default'")


def _tier(orders_limit: int, requests_limit: int) -> dict[str, int | None]:
    """A key's limits as shown: null for one left at the gateway's default."""
    return {"orders_limit": orders_limit or None, "requests_limit": requests_limit or None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matcher", default=os.environ.get("EXCHANGE_MATCHER"),
                        help=MATCHER_HELP)
    parser.add_argument("--link-token-file", default=None,
                        help="link token for a tcp: matcher (default: $EXCHANGE_LINK_TOKEN_FILE)")
    parser.add_argument("--secrets-key-file", type=Path, default=None,
                        help="key ring sealing API secrets (default: $EXCHANGE_SECRETS_KEY_FILE)")
    # The same option after the command: SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matcher", default=argparse.SUPPRESS, help=MATCHER_HELP)
    sub = parser.add_subparsers(dest="admin_command", required=True)
    p = sub.add_parser("create-account", help="create an account; prints its id",
                       parents=[common])
    p.add_argument("--label", default="")
    p = sub.add_parser("create-key", help="create an API key; prints key and secret once",
                       parents=[common])
    p.add_argument("--account", type=int, required=True)
    p.add_argument("--permissions", default="trade,read")
    p.add_argument("--ed25519-public-key", default=None,
                   help="an Ed25519 key: the exchange keeps this public key, no secret")
    p.add_argument("--orders-limit", default="default", help=ORDERS_LIMIT_HELP)
    p.add_argument("--requests-limit", default="default", help=REQUESTS_LIMIT_HELP)
    p = sub.add_parser("set-key-limits", help="set an API key's rate-limit tier; its live "
                       "sessions take it at once", parents=[common])
    p.add_argument("--key", required=True, help="the api_key")
    p.add_argument("--orders", default=None, help=ORDERS_LIMIT_HELP + " (default: unchanged)")
    p.add_argument("--requests", default=None,
                   help=REQUESTS_LIMIT_HELP + " (default: unchanged)")
    p = sub.add_parser("show-key", help="an API key's account, permissions and rate-limit tier",
                       parents=[common])
    p.add_argument("--key", required=True, help="the api_key")
    p = sub.add_parser("revoke-key", help="revoke an API key: its sessions are closed and its "
                       "logons refused", parents=[common])
    p.add_argument("--key", required=True, help="the api_key to revoke")
    for name in ("deposit", "withdraw"):
        p = sub.add_parser(name, help=f"{name} an amount (decimal string) of an asset",
                           parents=[common])
        p.add_argument("--account", type=int, required=True)
        p.add_argument("--asset", required=True)
        p.add_argument("--amount", required=True)
    for name in ("halt", "resume"):
        p = sub.add_parser(name, help=f"{name} trading in a symbol", parents=[common])
        p.add_argument("symbol")
    p = sub.add_parser("balances", help="an account's balances", parents=[common])
    p.add_argument("--account", type=int, required=True)
    add_listing_commands(sub, common)


async def execute(client: LinkClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.admin_command in LISTING_COMMANDS:
        return await execute_listing(client, args)
    config: ExchangeConfig = client.welcome.config
    match args.admin_command:
        case "create-account":
            return {"account_id": await admin_ops.create_account(client, args.label)}
        case "create-key":
            perms = list(admin_ops.parse_permissions(args.permissions))
            orders = admin_ops.parse_key_limit("--orders-limit", args.orders_limit)
            requests = admin_ops.parse_key_limit("--requests-limit", args.requests_limit)
            if args.ed25519_public_key is not None:
                key = await admin_ops.create_ed25519_key(
                    client, args.account, args.ed25519_public_key, perms,
                    orders_limit=orders, requests_limit=requests)
                return {"account_id": args.account, "api_key": key, "key_type": "ed25519",
                        "permissions": perms, **_tier(orders, requests)}
            key, secret = await admin_ops.create_api_key(
                client, args.account, perms, orders_limit=orders, requests_limit=requests)
            return {"account_id": args.account, "api_key": key, "secret": secret,
                    "permissions": perms, **_tier(orders, requests)}
        case "set-key-limits":
            changed = await admin_ops.set_key_limits(
                client, args.key,
                orders_limit=(None if args.orders is None
                              else admin_ops.parse_key_limit("--orders", args.orders)),
                requests_limit=(None if args.requests is None
                                else admin_ops.parse_key_limit("--requests", args.requests)))
            return {"api_key": changed.api_key, "account_id": changed.account_id,
                    **_tier(changed.orders_limit, changed.requests_limit), "seq": changed.seq}
        case "show-key":
            info = await admin_ops.key_info(client, args.key)
            return {"api_key": info.api_key, "account_id": info.account_id,
                    "permissions": list(info.permissions),
                    **_tier(info.orders_limit, info.requests_limit)}
        case "revoke-key":
            revoked = await admin_ops.revoke_api_key(client, args.key)
            return {"api_key": revoked.api_key, "account_id": revoked.account_id,
                    "revoked": True, "seq": revoked.seq}
        case "deposit" | "withdraw":
            op = admin_ops.deposit if args.admin_command == "deposit" else admin_ops.withdraw
            event = await op(client, args.account, args.asset, args.amount)
            return {"account_id": event.account_id, "asset": event.asset,
                    "amount": config.units_to_asset(event.asset, event.amount),
                    "available": config.units_to_asset(event.asset, event.available),
                    "seq": event.seq}
        case "halt":
            return {"symbol": (await admin_ops.halt(client, args.symbol)).symbol,
                    "halted": True}
        case "resume":
            return {"symbol": (await admin_ops.resume(client, args.symbol)).symbol,
                    "halted": False}
        case "balances":
            rows = await admin_ops.balances(client, args.account)
            return {"account_id": args.account, "balances": [
                {"asset": b.asset,
                 "available": config.units_to_asset(b.asset, b.available),
                 "held": config.units_to_asset(b.asset, b.held)} for b in rows]}
    raise AdminError(1001, f"unknown admin command {args.admin_command}")


class Unreachable(Exception):
    """The link could not be opened: nothing was sent."""


async def _main(args: argparse.Namespace) -> int:
    try:
        client = await LinkClient.connect(args.matcher, f"admin-{os.getpid()}")
    except (LinkDown, OSError) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from None
    try:
        print(json.dumps(await execute(client, args)))
        return 0
    finally:
        await client.close()


def _error(code: int, msg: str) -> None:
    print(json.dumps({"error": {"code": code, "msg": msg}}), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # stdout carries only the JSON answer; log lines (warnings and worse) go to stderr.
    configure_logging("admin", "warning")
    if not args.matcher:
        _error(1001, "no matcher address: pass --matcher or set EXCHANGE_MATCHER")
        return 1
    try:
        if args.link_token_file:
            use_link_token(load_token(args.link_token_file))
        process_link_token()
    except LinkTokenError as exc:
        _error(1002, str(exc))
        return 1
    if args.secrets_key_file is not None:
        try:
            credentials.use_key_ring(credentials.KeyRing.load(args.secrets_key_file))
        except (OSError, credentials.KeyRingError) as exc:
            _error(1002, f"--secrets-key-file: {exc}")
            return 1
    try:
        parse_address(args.matcher)
    except ValueError as exc:
        _error(1002, f"--matcher {args.matcher!r}: {exc}")
        return 1
    try:
        return asyncio.run(_main(args))
    except AdminError as exc:
        _error(exc.code, exc.message)
        return 1
    except Unreachable as exc:
        _error(5002, f"cannot reach the matcher at {args.matcher}: {exc} (nothing was sent)")
        return 2
    except (LinkDown, OSError) as exc:
        _error(5001, f"the link to the matcher dropped: {exc} (outcome unknown; check "
               "with `exchange admin balances`)")
        return 2
