"""Operator actions over a matcher link, shared by `exchange admin`, the gateway's admin HTTP
API and the load test.

Each state change is a command journaled by the matcher like an order. Inputs are checked
here first (decimal amounts converted exactly with `ExchangeConfig.asset_to_units`, never
rounded; permissions; symbols) and a bad one raises `AdminError` without sending anything.
An engine rejection (unknown account, insufficient balance...) also raises `AdminError` with
the engine's code. A lost link raises `LinkDown`: the outcome is then unknown.

API keys and secrets are generated here with `secrets`, outside the engine (it has no
randomness), and travel in the CreateApiKey command sealed with the secrets key ring
(exchange.credentials): the journal and the snapshots never hold a secret in clear. Ed25519
keys travel as their public key only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import TypeVar

from exchange import credentials
from exchange.engine.accounts import FEE_ACCOUNT
from exchange.link.client import LinkClient
from exchange.link.messages import Refused
from exchange.model.codes import MESSAGES, Code
from exchange.model.commands import (
    MAX_KEY_LIMIT,
    Command,
    CreateAccount,
    CreateApiKey,
    Deposit,
    HaltSymbol,
    Permission,
    ResumeSymbol,
    RevokeApiKey,
    SetKeyLimits,
    Withdraw,
)
from exchange.model.events import (
    AccountCreated,
    ApiKeyCreated,
    ApiKeyRevoked,
    CommandRejected,
    Deposited,
    Event,
    KeyLimitsSet,
    SymbolHalted,
    SymbolResumed,
    Withdrawn,
)
from exchange.model.numbers import MAX_UNITS
from exchange.model.queries import (
    ApiKeyInfo,
    Balance,
    BalanceList,
    GetApiKey,
    GetBalances,
    NotFound,
)

__all__ = [
    "PERMISSIONS",
    "AdminError",
    "balances",
    "check_account_id",
    "create_account",
    "create_api_key",
    "create_ed25519_key",
    "deposit",
    "halt",
    "key_info",
    "parse_key_limit",
    "parse_permissions",
    "resume",
    "revoke_api_key",
    "set_key_limits",
    "withdraw",
]

_E = TypeVar("_E")

PERMISSIONS: tuple[Permission, ...] = ("trade", "read")
MAX_LABEL_CHARS = 200
# Account ids travel as 64-bit integers; anything larger cannot name an account.
MAX_ACCOUNT_ID = 2**63 - 1
# Keys made here are 32 hex characters; anything much longer names no key.
MAX_API_KEY_CHARS = 200


class AdminError(Exception):
    """An operator command that was refused; `code` is an exchange.model.codes.Code value."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def check_account_id(account_id: object) -> int:
    """An account id that the link can carry, or AdminError 1002 (sent nowhere)."""
    if type(account_id) is not int or not 0 <= account_id <= MAX_ACCOUNT_ID:
        raise AdminError(Code.INVALID_VALUE,
                         f"account id must be an integer in 0..{MAX_ACCOUNT_ID}")
    return account_id


def parse_permissions(value: str | Iterable[str]) -> tuple[Permission, ...]:
    """"trade,read" (or an iterable) -> ("trade", "read") in canonical order, or AdminError."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {item.strip() for item in items if item.strip()}
    unknown = names - set(PERMISSIONS)
    if unknown or not names:
        raise AdminError(Code.INVALID_VALUE,
                         f"permissions must be a non-empty subset of {list(PERMISSIONS)}, "
                         f"got {sorted(names | unknown)}")
    return tuple(p for p in PERMISSIONS if p in names)


def parse_key_limit(name: str, value: object) -> int:
    """A key's rate limit as an operator gives it: an integer 1..MAX_KEY_LIMIT (also as
    decimal digits), or "default" (0: the gateway's own setting); else AdminError 1002."""
    if value == "default":
        return 0
    if type(value) is str and value.isdigit() and len(value) <= 12:
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_KEY_LIMIT:
        raise AdminError(Code.INVALID_VALUE,
                         f"{name} must be an integer in 1..{MAX_KEY_LIMIT} (per the gateway's "
                         f"window) or \"default\", got {value!r}")
    return value


def _check_api_key(api_key: str) -> None:
    if not api_key or len(api_key) > MAX_API_KEY_CHARS or not api_key.isprintable():
        raise AdminError(Code.INVALID_VALUE,
                         f"api key must be 1 to {MAX_API_KEY_CHARS} printable characters")


async def _run(client: LinkClient, command: Command) -> Event:
    outcome = await client.submit(command)
    if isinstance(outcome, Refused):
        raise AdminError(outcome.code, f"matcher refused the command: {outcome.reason}")
    if not outcome.events:
        raise AdminError(Code.INTERNAL, "the engine answered with no event")
    first = outcome.events[0]
    if isinstance(first, CommandRejected):
        raise AdminError(first.code, first.reason or MESSAGES.get(Code(first.code), "rejected"))
    return first


# Sends one command and answers its first event, or raises AdminError (other operator modules:
# exchange.link.listing_ops).
run_command = _run


def _expect(event: Event, kind: type[_E]) -> _E:
    if not isinstance(event, kind):
        raise AdminError(Code.INTERNAL, f"unexpected answer {type(event).__name__}")
    return event


async def create_account(client: LinkClient, label: str = "") -> int:
    if len(label) > MAX_LABEL_CHARS:
        raise AdminError(Code.INVALID_VALUE, f"label longer than {MAX_LABEL_CHARS} characters")
    event = _expect(await _run(client, CreateAccount(label=label)), AccountCreated)
    return event.account_id


async def create_api_key(
    client: LinkClient,
    account_id: int,
    permissions: str | Iterable[str] = PERMISSIONS,
    *,
    ring: credentials.KeyRing | None = None,
    orders_limit: int = 0,
    requests_limit: int = 0,
) -> tuple[str, str]:
    """A new key for the account: returns (api_key, secret). The secret is shown only now.

    The matcher receives the secret sealed with `ring` (default: the process's key ring); with
    no key ring configured nothing is sent (5002), never a clear secret. `orders_limit` and
    `requests_limit` give the key a rate-limit tier of its own (0: the gateway's default).
    """
    check_account_id(account_id)
    perms = parse_permissions(permissions)
    _check_tier(orders_limit, requests_limit)
    if account_id == FEE_ACCOUNT:
        raise AdminError(Code.INVALID_VALUE, f"account {FEE_ACCOUNT} is the exchange's fee "
                         "account and cannot have API keys; create an account first")
    ring = ring if ring is not None else credentials.process_key_ring()
    if ring is None:
        raise AdminError(Code.INTERNAL,
                         f"no secrets key: set {credentials.KEY_FILE_ENV} (a file made with "
                         f"'exchange secrets-key') or {credentials.KEY_ENV}")
    api_key = secrets.token_hex(16)
    secret = secrets.token_hex(32)
    command = CreateApiKey(account_id=account_id, api_key=api_key,
                           secret=ring.seal(secret, api_key), permissions=perms,
                           orders_limit=orders_limit, requests_limit=requests_limit)
    _expect(await _run(client, command), ApiKeyCreated)
    return api_key, secret


async def create_ed25519_key(
    client: LinkClient,
    account_id: int,
    public_key: str,
    permissions: str | Iterable[str] = PERMISSIONS,
    *,
    orders_limit: int = 0,
    requests_limit: int = 0,
) -> str:
    """A new key whose logons are signed with the Ed25519 private key of `public_key` (hex or
    base64 of the 32 raw bytes). The exchange stores only the public key. Returns the api_key.
    """
    check_account_id(account_id)
    perms = parse_permissions(permissions)
    _check_tier(orders_limit, requests_limit)
    raw = credentials.parse_public_key(public_key)
    if raw is None:
        raise AdminError(Code.INVALID_VALUE,
                         "public key must be the 32 bytes of an Ed25519 key, hex or base64")
    api_key = secrets.token_hex(16)
    command = CreateApiKey(account_id=account_id, api_key=api_key,
                           secret=credentials.ed25519_record(raw), permissions=perms,
                           orders_limit=orders_limit, requests_limit=requests_limit)
    _expect(await _run(client, command), ApiKeyCreated)
    return api_key


async def revoke_api_key(client: LinkClient, api_key: str) -> ApiKeyRevoked:
    """Withdraw a key for good: journaled, its sessions on every gateway are closed and its
    logons refused from then on. An unknown or already revoked key is AdminError 3010."""
    _check_api_key(api_key)
    return _expect(await _run(client, RevokeApiKey(api_key=api_key)), ApiKeyRevoked)


def _check_tier(orders_limit: int | None, requests_limit: int | None) -> None:
    for name, value in (("orders limit", orders_limit), ("requests limit", requests_limit)):
        if value is not None and value != 0:
            parse_key_limit(name, value)


async def set_key_limits(client: LinkClient, api_key: str, *, orders_limit: int | None = None,
                         requests_limit: int | None = None) -> KeyLimitsSet:
    """A key's rate-limit tier: journaled, then pushed to every gateway, whose live sessions
    of the key take it at once. None leaves a limit as it is, 0 returns it to the gateway's
    default. An unknown key is AdminError 3010; a bad value 1002, with nothing sent."""
    _check_api_key(api_key)
    if orders_limit is None and requests_limit is None:
        raise AdminError(Code.MALFORMED, "give an orders limit, a requests limit or both")
    _check_tier(orders_limit, requests_limit)
    command = SetKeyLimits(api_key=api_key, orders_limit=orders_limit,
                           requests_limit=requests_limit)
    return _expect(await _run(client, command), KeyLimitsSet)


async def key_info(client: LinkClient, api_key: str) -> ApiKeyInfo:
    """A key's account, permissions and rate-limit tier; AdminError 3010 for an unknown key.
    The stored secret record is in the answer: callers show everything but it."""
    _check_api_key(api_key)
    answer = await client.ask(GetApiKey(api_key=api_key))
    if isinstance(answer, NotFound):
        raise AdminError(Code.UNKNOWN_API_KEY, "unknown api key")
    if not isinstance(answer, ApiKeyInfo):
        raise AdminError(Code.INTERNAL, f"unexpected answer {type(answer).__name__}")
    return answer


def _units(client: LinkClient, asset: str, amount: str) -> int:
    config = client.welcome.config
    if asset not in config.assets:
        raise AdminError(Code.INVALID_VALUE,
                         f"unknown asset {asset!r}; known: {sorted(config.assets)}")
    units = config.asset_to_units(asset, amount)
    if units is None:
        decimals = config.assets[asset].decimals
        largest = config.units_to_asset(asset, MAX_UNITS)
        raise AdminError(Code.INVALID_VALUE,
                         f"bad amount {amount!r} for {asset}: need a positive plain decimal "
                         f"with at most {decimals} decimals, at most {largest} (never rounded)")
    return units


async def deposit(client: LinkClient, account_id: int, asset: str, amount: str) -> Deposited:
    if check_account_id(account_id) == FEE_ACCOUNT:
        raise AdminError(Code.INVALID_VALUE,
                         f"account {FEE_ACCOUNT} is the fee account: it takes no deposits")
    units = _units(client, asset, amount)
    command = Deposit(account_id=account_id, asset=asset, amount=units)
    return _expect(await _run(client, command), Deposited)


async def withdraw(client: LinkClient, account_id: int, asset: str, amount: str) -> Withdrawn:
    check_account_id(account_id)
    units = _units(client, asset, amount)
    command = Withdraw(account_id=account_id, asset=asset, amount=units)
    return _expect(await _run(client, command), Withdrawn)


def _symbol(client: LinkClient, symbol: str) -> str:
    if symbol not in client.welcome.symbols:
        raise AdminError(Code.UNKNOWN_SYMBOL,
                         f"{symbol!r} is not traded by this matcher "
                         f"({', '.join(client.welcome.symbols)})")
    return symbol


async def halt(client: LinkClient, symbol: str) -> SymbolHalted:
    return _expect(await _run(client, HaltSymbol(symbol=_symbol(client, symbol))), SymbolHalted)


async def resume(client: LinkClient, symbol: str) -> SymbolResumed:
    command = ResumeSymbol(symbol=_symbol(client, symbol))
    return _expect(await _run(client, command), SymbolResumed)


async def balances(client: LinkClient, account_id: int) -> list[Balance]:
    check_account_id(account_id)
    answer = await client.ask(GetBalances(account_id=account_id))
    if isinstance(answer, NotFound):
        raise AdminError(answer.code, f"account {account_id}: "
                         f"{MESSAGES.get(Code(answer.code), 'not found')}")
    if not isinstance(answer, BalanceList):
        raise AdminError(Code.INTERNAL, f"unexpected answer {type(answer).__name__}")
    return answer.balances
