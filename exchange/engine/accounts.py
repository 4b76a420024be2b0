"""Accounts: per-asset balances (available and held), the account's open orders, API keys."""

from __future__ import annotations

from exchange.engine.orders import Order
from exchange.model.commands import Permission

FEE_ACCOUNT = 0


class Balance:
    __slots__ = ("available", "held")

    def __init__(self, available: int = 0, held: int = 0) -> None:
        self.available = available
        self.held = held


class Account:
    __slots__ = ("account_id", "balances", "by_coid", "label", "open")

    def __init__(self, account_id: int, label: str, assets: list[str]) -> None:
        self.account_id = account_id
        self.label = label
        # Every configured asset from the start: the hot path never misses a lookup.
        self.balances: dict[str, Balance] = {name: Balance() for name in assets}
        # Open (resting) orders by id, in id order, and by client_order_id.
        self.open: dict[int, Order] = {}
        self.by_coid: dict[str, Order] = {}


class ApiKey:
    __slots__ = ("account_id", "api_key", "orders_limit", "permissions", "requests_limit",
                 "secret")

    def __init__(
        self, api_key: str, account_id: int, secret: str, permissions: tuple[Permission, ...],
        orders_limit: int = 0, requests_limit: int = 0,
    ) -> None:
        self.api_key = api_key
        self.account_id = account_id
        self.secret = secret
        self.permissions = permissions
        # The key's rate-limit tier, per the gateway's window; 0: the gateway's default.
        self.orders_limit = orders_limit
        self.requests_limit = requests_limit
