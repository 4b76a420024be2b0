"""Operator commands: accounts, API keys and their rate-limit tiers, deposits and
withdrawals, halts.

Each answers with its past-tense event or a CommandRejected, and changes nothing on reject.
"""

from __future__ import annotations

from typing import Final

from exchange.engine.accounts import FEE_ACCOUNT, Account, ApiKey
from exchange.engine.base import EngineBase
from exchange.model.codes import Code
from exchange.model.commands import (
    MAX_KEY_LIMIT,
    CreateAccount,
    CreateApiKey,
    Deposit,
    HaltSymbol,
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

# Cap on all units of one asset in the exchange (deposits - withdrawals): every balance then
# fits the snapshot's 64-bit integers, fee account included.
MAX_ASSET_TOTAL: Final = 2**62

_INVALID = int(Code.INVALID_VALUE)
_UNKNOWN_SYMBOL = int(Code.UNKNOWN_SYMBOL)
_UNKNOWN_ACCOUNT = int(Code.UNKNOWN_ACCOUNT)
_BALANCE = int(Code.INSUFFICIENT_BALANCE)
_DUP_KEY = int(Code.DUPLICATE_API_KEY)
_UNKNOWN_KEY = int(Code.UNKNOWN_API_KEY)


def _limit_ok(value: int | None) -> bool:
    """A key limit as a command may carry it: None (unchanged), 0 (the gateway's default)
    or 1..MAX_KEY_LIMIT. `type() is int`: a bool is no limit."""
    return value is None or (type(value) is int and 0 <= value <= MAX_KEY_LIMIT)


class Admin(EngineBase):
    """Operator commands, as methods of the engine."""

    def _create_account(self, c: CreateAccount, seq: int, ts: int) -> list[Event]:
        account_id = self._next_account_id
        self._next_account_id += 1
        self._accounts[account_id] = Account(account_id, c.label, self._assets)
        return [AccountCreated(seq=seq, ts=ts, account_id=account_id, label=c.label)]

    def _create_api_key(self, c: CreateApiKey, seq: int, ts: int) -> list[Event]:
        if (not c.api_key or not c.secret or not c.permissions
                or not _limit_ok(c.orders_limit) or not _limit_ok(c.requests_limit)):
            return [CommandRejected(seq=seq, ts=ts, code=_INVALID, reason="invalid field value")]
        if c.account_id == FEE_ACCOUNT or c.account_id not in self._accounts:
            return [
                CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_ACCOUNT, reason="unknown account")
            ]
        if c.api_key in self._api_keys:
            return [CommandRejected(seq=seq, ts=ts, code=_DUP_KEY, reason="duplicate api key")]
        self._api_keys[c.api_key] = ApiKey(c.api_key, c.account_id, c.secret, c.permissions,
                                           c.orders_limit, c.requests_limit)
        return [
            ApiKeyCreated(
                seq=seq, ts=ts, account_id=c.account_id, api_key=c.api_key,
                permissions=c.permissions, orders_limit=c.orders_limit,
                requests_limit=c.requests_limit,
            )
        ]

    def _set_key_limits(self, c: SetKeyLimits, seq: int, ts: int) -> list[Event]:
        """A key's rate-limit tier; the matcher pushes it to every gateway once journaled."""
        if not _limit_ok(c.orders_limit) or not _limit_ok(c.requests_limit):
            return [CommandRejected(seq=seq, ts=ts, code=_INVALID, reason="invalid field value")]
        key = self._api_keys.get(c.api_key)
        if key is None:
            return [CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_KEY, reason="unknown api key")]
        if c.orders_limit is not None:
            key.orders_limit = c.orders_limit
        if c.requests_limit is not None:
            key.requests_limit = c.requests_limit
        return [
            KeyLimitsSet(seq=seq, ts=ts, account_id=key.account_id, api_key=key.api_key,
                         orders_limit=key.orders_limit, requests_limit=key.requests_limit)
        ]

    def _revoke_api_key(self, c: RevokeApiKey, seq: int, ts: int) -> list[Event]:
        """The key is forgotten: GetApiKey, snapshots and replays no longer know it, so it
        is refused as an unknown key is. Revoking it again is 3010, as for a key never made."""
        key = self._api_keys.pop(c.api_key, None)
        if key is None:
            return [CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_KEY, reason="unknown api key")]
        return [ApiKeyRevoked(seq=seq, ts=ts, account_id=key.account_id, api_key=c.api_key)]

    def _funds_check(self, c: Deposit | Withdraw, seq: int, ts: int) -> list[Event] | None:
        if (
            c.asset not in self._net_deposits
            or c.amount <= 0
            or (type(c) is Deposit and self._net_deposits[c.asset] + c.amount > MAX_ASSET_TOTAL)
        ):
            return [CommandRejected(seq=seq, ts=ts, code=_INVALID, reason="invalid field value")]
        if c.account_id not in self._accounts or (
            # The fee account only ever receives fees: a deposit there would pass for them.
            type(c) is Deposit and c.account_id == FEE_ACCOUNT
        ):
            return [
                CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_ACCOUNT, reason="unknown account")
            ]
        return None

    def _deposit(self, c: Deposit, seq: int, ts: int) -> list[Event]:
        rejected = self._funds_check(c, seq, ts)
        if rejected is not None:
            return rejected
        bal = self._accounts[c.account_id].balances[c.asset]
        bal.available += c.amount
        self._net_deposits[c.asset] += c.amount
        return [
            Deposited(seq=seq, ts=ts, account_id=c.account_id, asset=c.asset, amount=c.amount,
                      available=bal.available)
        ]

    def _withdraw(self, c: Withdraw, seq: int, ts: int) -> list[Event]:
        rejected = self._funds_check(c, seq, ts)
        if rejected is not None:
            return rejected
        bal = self._accounts[c.account_id].balances[c.asset]
        if c.amount > bal.available:
            return [CommandRejected(seq=seq, ts=ts, code=_BALANCE, reason="insufficient balance")]
        bal.available -= c.amount
        self._net_deposits[c.asset] -= c.amount
        return [
            Withdrawn(seq=seq, ts=ts, account_id=c.account_id, asset=c.asset, amount=c.amount,
                      available=bal.available)
        ]

    def _halt(self, c: HaltSymbol | ResumeSymbol, seq: int, ts: int) -> list[Event]:
        book = self._books.get(c.symbol)
        if book is None:
            return [CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_SYMBOL, reason="unknown symbol")]
        if type(c) is HaltSymbol:
            book.halted = True
            return [SymbolHalted(seq=seq, ts=ts, symbol=c.symbol)]
        book.halted = False
        return [SymbolResumed(seq=seq, ts=ts, symbol=c.symbol)]
