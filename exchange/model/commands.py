"""Commands to the engine: integers only, validated for shape at the edge.

Every state change (orders and operator actions alike) is a command; the matcher stamps each
with a sequence number and a timestamp, journals it, and only then applies it. Field values
are already converted to ticks, lots and asset units by the edge; the engine still checks
everything that depends on state (balances, limits, band, ids).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop_market", "stop_limit"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
SelfTradePrevention = Literal["cancel_newest", "cancel_oldest", "cancel_both"]
Permission = Literal["trade", "read"]


# gc=False: commands hold no containers that could form cycles, so the cyclic collector need
# not track them (docs/ARCHITECTURE.md: few tracked objects in the hot path).
class _Command(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    gc=False,
):
    pass


class PlaceOrder(_Command, tag="place", kw_only=True, frozen=True):
    account_id: int
    symbol: str
    side: Side
    order_type: OrderType
    qty: int  # lots
    price: int | None = None  # ticks; required for limit and stop_limit, None otherwise
    tif: TimeInForce = "GTC"
    post_only: bool = False
    client_order_id: str
    stp: SelfTradePrevention = "cancel_newest"
    # The session that placed it, for cancel-on-disconnect scoped to a session. "" for none.
    session_id: str = ""
    # Ticks; required for stop_market and stop_limit, None otherwise: the last trade price
    # that triggers the order (a buy at or above it, a sell at or below it).
    stop_price: int | None = None
    # Lots shown in the book at a time (an iceberg), 0 for all: limit orders only.
    display_qty: int = 0


class CancelOrder(_Command, tag="cancel", kw_only=True, frozen=True):
    account_id: int
    symbol: str
    order_id: int | None = None
    client_order_id: str | None = None


class AmendOrder(_Command, tag="amend", kw_only=True, frozen=True):
    account_id: int
    symbol: str
    order_id: int | None = None
    client_order_id: str | None = None
    new_qty: int | None = None  # lots, total order qty (not remaining)
    new_price: int | None = None  # ticks
    new_stop_price: int | None = None  # ticks; only for a stop order not yet triggered


class CancelAll(_Command, tag="cancel_all", kw_only=True, frozen=True):
    account_id: int
    symbol: str | None = None
    # Non-empty: only the orders placed by this session (cancel-on-disconnect "session").
    session_id: str = ""
    reason: Literal["user", "disconnect"] = "user"


class CreateAccount(_Command, tag="create_account", kw_only=True, frozen=True):
    # The engine assigns the id (next free, deterministic); `label` is the operator's note.
    label: str = ""


class CreateApiKey(_Command, tag="create_api_key", kw_only=True, frozen=True):
    account_id: int
    api_key: str
    # Generated outside the engine (randomness has no place in it) and journaled with the key.
    secret: str
    permissions: tuple[Permission, ...] = ("trade", "read")
    # The key's rate-limit tier (see SetKeyLimits); 0 is the gateway's configured default.
    orders_limit: int = 0
    requests_limit: int = 0


# A key's explicit limits lie in 1..MAX_KEY_LIMIT per the gateway's window; 0 means the
# gateway's own default. The bound keeps a typo from switching a key's limit off in effect.
MAX_KEY_LIMIT = 1_000_000


class SetKeyLimits(_Command, tag="set_key_limits", kw_only=True, frozen=True):
    """A key's rate-limit tier: `orders_limit` for the key's order bucket (shared by all its
    sessions, WebSocket and FIX), `requests_limit` for each of its WebSocket connections'
    request bucket, both per the gateway's window. None leaves a limit as it is; 0 returns
    it to the gateway's default."""

    api_key: str
    orders_limit: int | None = None
    requests_limit: int | None = None


class RevokeApiKey(_Command, tag="revoke_api_key", kw_only=True, frozen=True):
    api_key: str


class Deposit(_Command, tag="deposit", kw_only=True, frozen=True):
    account_id: int
    asset: str
    amount: int  # asset units, > 0


class Withdraw(_Command, tag="withdraw", kw_only=True, frozen=True):
    account_id: int
    asset: str
    amount: int  # asset units, > 0; from `available` only


class HaltSymbol(_Command, tag="halt", kw_only=True, frozen=True):
    symbol: str


class ResumeSymbol(_Command, tag="resume", kw_only=True, frozen=True):
    symbol: str


class ListAsset(_Command, tag="list_asset", kw_only=True, frozen=True):
    """A new asset: every account gets a zero balance of it."""

    asset: str
    decimals: int


class ListInstrument(_Command, tag="list_instrument", kw_only=True, frozen=True):
    """A new instrument, written as in the config file (decimal strings for sizes and
    prices): the engine derives its integer scales exactly as a config load does, so the
    journal holds what the operator asked for."""

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


class UpdateInstrument(_Command, tag="update_instrument", kw_only=True, frozen=True):
    """New live parameters for a listed instrument; None leaves a field as it is. Tick, lot,
    base and quote are not here: stored integers mean them, so they never change."""

    symbol: str
    price_band_pct: int | None = None
    maker_fee_bps: int | None = None
    taker_fee_bps: int | None = None
    min_qty: str | None = None
    max_qty: str | None = None
    reference_price: str | None = None


# Most commands one Batch may carry.
MAX_BATCH = 20


class Batch(_Command, tag="batch", kw_only=True, frozen=True):
    """Up to MAX_BATCH places or cancels, journaled and sequenced as one command: each is
    applied in turn, with the batch's seq and ts, exactly as it would be on its own."""

    commands: tuple[PlaceOrder | CancelOrder, ...]


Command = (
    PlaceOrder
    | CancelOrder
    | AmendOrder
    | CancelAll
    | CreateAccount
    | CreateApiKey
    | RevokeApiKey
    | SetKeyLimits
    | Deposit
    | Withdraw
    | HaltSymbol
    | ResumeSymbol
    | Batch
    | ListAsset
    | ListInstrument
    | UpdateInstrument
)

ORDER_COMMANDS = (PlaceOrder, CancelOrder, AmendOrder, CancelAll, Batch)
