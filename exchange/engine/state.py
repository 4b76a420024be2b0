"""The engine's whole state as plain records, for snapshot bytes and restore.

Everything is written in an order fixed by the state itself (books best level first and FIFO
within a level, accounts and keys in creation order, closed orders oldest first), so the same
state always gives the same bytes and `restore` rebuilds the same insertion orders.
"""

from __future__ import annotations

import msgspec

from exchange.model.candles import Candle
from exchange.model.commands import Permission
from exchange.model.events import TradeExecuted
from exchange.model.instruments import Asset, Instrument
from exchange.model.orders import OrderFields


class OrderRecord(OrderFields, array_like=True, frozen=True):  # type: ignore[misc]
    """An open or recently closed order in a snapshot (`exchange.model.orders` fields)."""


class BalanceRecord(msgspec.Struct, array_like=True):
    asset: str
    available: int
    held: int


class AccountRecord(msgspec.Struct, array_like=True):
    account_id: int
    label: str
    balances: list[BalanceRecord]


class ApiKeyRecord(msgspec.Struct, array_like=True):
    api_key: str
    account_id: int
    secret: str
    permissions: tuple[Permission, ...]
    # The key's rate-limit tier (0: the gateway's default). Last, with defaults: a version 2 or 3
    # snapshot, written before tiers existed, loads with every key on the default.
    orders_limit: int = 0
    requests_limit: int = 0


class BookRecord(msgspec.Struct, array_like=True):
    symbol: str
    halted: bool
    last_price: int
    book_seq: int
    trade_id: int
    trades: list[TradeExecuted]
    bids: list[OrderRecord]  # best level first, FIFO within a level
    asks: list[OrderRecord]
    # Per interval in exchange.model.candles.INTERVALS order, oldest first. Last, with a
    # default: snapshots written before candles existed still load (with no candles).
    candles: list[list[Candle]] = []
    stops: list[OrderRecord] = []  # stop orders not yet triggered, in order-id order


class EngineState(msgspec.Struct, array_like=True):
    version: int
    last_seq: int
    next_order_id: int
    next_exec_id: int
    next_account_id: int
    net_deposits: list[tuple[str, int]]  # per asset: deposits - withdrawals
    accounts: list[AccountRecord]
    api_keys: list[ApiKeyRecord]
    books: list[BookRecord]
    closed: list[OrderRecord]  # recently closed orders, oldest first
    # The live assets and instruments, in listing order (version 3 on). Version 2 snapshots
    # have none: the config they were made with is their set.
    assets: list[Asset] = []
    instruments: list[Instrument] = []


# 2: shared order fields, stop orders, icebergs; 3: the live assets and instruments; 4: key
# rate-limit tiers (the key records' trailing limits, which 2 and 3 load as the default).
STATE_VERSION = 4
LOADABLE_VERSIONS = (2, 3, 4)
ENCODER = msgspec.msgpack.Encoder()
DECODER = msgspec.msgpack.Decoder(EngineState)
