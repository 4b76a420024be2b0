"""A tiny deterministic stand-in for the engine, to test the matcher's plumbing alone.

`StubEngine` accepts every order (orders rest until canceled, nothing matches), keeps balances
without holds, and answers order, balance and API-key queries. With STUB_SNAPSHOT_DELAY_S set,
its snapshot sleeps first (tests that kill the matcher while a snapshot is being written).
`python -m tests.support.stub_engine <matcher args>` runs a matcher with it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from exchange.matcher.engine_port import EngineLike
from exchange.model.codes import Code
from exchange.model.commands import (
    CancelAll,
    CancelOrder,
    Command,
    CreateAccount,
    CreateApiKey,
    Deposit,
    HaltSymbol,
    PlaceOrder,
    ResumeSymbol,
    Withdraw,
)
from exchange.model.events import (
    AccountCreated,
    AllCanceled,
    ApiKeyCreated,
    CancelRejected,
    CommandRejected,
    Deposited,
    Event,
    OrderAccepted,
    OrderCanceled,
    SymbolHalted,
    SymbolResumed,
    Withdrawn,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import (
    ApiKeyInfo,
    Balance,
    BalanceList,
    GetApiKey,
    GetBalances,
    GetOrder,
    NotFound,
    OrderState,
    Query,
    QueryResult,
)


class _StubState(msgspec.Struct):
    last_seq: int = 0
    next_account: int = 1
    next_order: int = 1
    next_exec: int = 1
    accounts: dict[int, dict[str, int]] = {}
    keys: dict[str, tuple[int, str, list[str]]] = {}
    # order id -> [account, symbol, side, price, qty, client order id, session, status]
    orders: dict[int, list[Any]] = {}
    halted: list[str] = []


class StubEngine:
    """Deterministic, tiny: orders rest forever unless canceled; balances are not checked."""

    def __init__(self, config: ExchangeConfig, state: _StubState | None = None) -> None:
        self.config = config
        self.listing_changes = 0  # the stub lists nothing
        self.s = state if state is not None else _StubState()

    @classmethod
    def restore(cls, config: ExchangeConfig, data: bytes) -> StubEngine:
        return cls(config, msgspec.msgpack.decode(data, type=_StubState))

    @property
    def last_seq(self) -> int:
        return self.s.last_seq

    def snapshot(self) -> bytes:
        # Tests of crashes during snapshot writes slow the (forked) serialization down.
        delay = float(os.environ.get("STUB_SNAPSHOT_DELAY_S", "0"))
        if delay:
            time.sleep(delay)
        return msgspec.msgpack.encode(self.s)

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    def validate(self) -> None:
        assert all(o[7] in ("new", "canceled") for o in self.s.orders.values())

    def _order_event(self, cls: type, oid: int, seq: int, ts: int, **extra: Any) -> Event:
        acct, symbol, side, price, qty, cid, sid, status = self.s.orders[oid]
        exec_id = self.s.next_exec
        self.s.next_exec += 1
        event: Event = cls(
            seq=seq, ts=ts, exec_id=exec_id, account_id=acct, order_id=oid, client_order_id=cid,
            symbol=symbol, side=side, order_type="limit", tif="GTC", price=price, qty=qty,
            cum_qty=0, leaves_qty=qty if status == "new" else 0, cum_notional=0, status=status,
            session_id=sid, **extra,
        )
        return event

    def apply(self, command: Command, seq: int, ts: int) -> list[Event]:
        assert seq == self.s.last_seq + 1, (seq, self.s.last_seq)
        self.s.last_seq = seq
        s = self.s
        match command:
            case PlaceOrder():
                oid = s.next_order
                s.next_order += 1
                s.orders[oid] = [command.account_id, command.symbol, command.side, command.price,
                                 command.qty, command.client_order_id, command.session_id, "new"]
                return [self._order_event(OrderAccepted, oid, seq, ts, post_only=False)]
            case CancelOrder():
                order = s.orders.get(command.order_id or 0)
                if order is None or order[0] != command.account_id or order[7] != "new":
                    return [CancelRejected(seq=seq, ts=ts, account_id=command.account_id,
                                           symbol=command.symbol, order_id=command.order_id,
                                           client_order_id=None, code=Code.UNKNOWN_ORDER,
                                           amend=False)]
                order[7] = "canceled"
                return [self._order_event(OrderCanceled, command.order_id or 0, seq, ts,
                                          reason="user")]
            case CancelAll():
                events: list[Event] = []
                for oid in sorted(s.orders):
                    order = s.orders[oid]
                    if order[0] == command.account_id and order[7] == "new" and (
                        not command.session_id or order[6] == command.session_id
                    ):
                        order[7] = "canceled"
                        events.append(self._order_event(OrderCanceled, oid, seq, ts,
                                                         reason=command.reason))
                events.append(AllCanceled(seq=seq, ts=ts, account_id=command.account_id,
                                          symbol=command.symbol, count=len(events)))
                return events
            case CreateAccount():
                aid = s.next_account
                s.next_account += 1
                s.accounts[aid] = {}
                return [AccountCreated(seq=seq, ts=ts, account_id=aid, label=command.label)]
            case CreateApiKey():
                if command.account_id not in s.accounts:
                    return [CommandRejected(seq=seq, ts=ts, code=Code.UNKNOWN_ACCOUNT,
                                            reason="unknown account")]
                s.keys[command.api_key] = (command.account_id, command.secret,
                                           list(command.permissions))
                return [ApiKeyCreated(seq=seq, ts=ts, account_id=command.account_id,
                                      api_key=command.api_key, permissions=command.permissions)]
            case Deposit() | Withdraw():
                bal = s.accounts.get(command.account_id)
                if bal is None:
                    return [CommandRejected(seq=seq, ts=ts, code=Code.UNKNOWN_ACCOUNT,
                                            reason="unknown account")]
                sign = 1 if isinstance(command, Deposit) else -1
                if bal.get(command.asset, 0) + sign * command.amount < 0:
                    return [CommandRejected(seq=seq, ts=ts, code=Code.INSUFFICIENT_BALANCE,
                                            reason="insufficient balance")]
                bal[command.asset] = bal.get(command.asset, 0) + sign * command.amount
                cls = Deposited if sign > 0 else Withdrawn
                return [cls(seq=seq, ts=ts, account_id=command.account_id, asset=command.asset,
                            amount=command.amount, available=bal[command.asset])]
            case HaltSymbol():
                s.halted.append(command.symbol)
                return [SymbolHalted(seq=seq, ts=ts, symbol=command.symbol)]
            case ResumeSymbol():
                if command.symbol in s.halted:
                    s.halted.remove(command.symbol)
                return [SymbolResumed(seq=seq, ts=ts, symbol=command.symbol)]
            case _:
                return [CommandRejected(seq=seq, ts=ts, code=Code.MALFORMED, reason="stub")]

    def answer(self, query: Query) -> QueryResult:
        s = self.s
        match query:
            case GetOrder(order_id=oid) if oid in s.orders:
                acct, symbol, side, price, qty, cid, sid, status = s.orders[oid]
                if acct != query.account_id:
                    return NotFound(code=Code.UNKNOWN_ORDER)
                return OrderState(account_id=acct, order_id=oid, client_order_id=cid,
                                  symbol=symbol, side=side, order_type="limit", tif="GTC",
                                  post_only=False, price=price, qty=qty, cum_qty=0,
                                  leaves_qty=qty if status == "new" else 0, cum_notional=0,
                                  status=status, session_id=sid, created_seq=0, created_ts=0,
                                  updated_ts=0)
            case GetBalances(account_id=aid) if aid in s.accounts:
                return BalanceList(balances=[Balance(asset=a, available=v, held=0)
                                             for a, v in sorted(s.accounts[aid].items())])
            case GetApiKey(api_key=key) if key in s.keys:
                aid, secret, perms = s.keys[key]
                return ApiKeyInfo(api_key=key, account_id=aid, secret=secret,
                                  permissions=tuple(perms))  # type: ignore[arg-type]
            case _:
                return NotFound(code=Code.UNKNOWN_ORDER)


class StubFactory:
    def new(self, config: ExchangeConfig) -> EngineLike:
        return StubEngine(config)

    def restore(self, config: ExchangeConfig, data: bytes) -> EngineLike:
        return StubEngine.restore(config, data)


def _main(argv: Sequence[str] | None = None) -> int:
    from exchange.matcher import main as matcher_main

    parser = argparse.ArgumentParser()
    matcher_main.add_arguments(parser)
    args = parser.parse_args(argv)
    return matcher_main.run(args, factory=StubFactory())


if __name__ == "__main__":
    sys.exit(_main())
