"""A driver for direct engine tests: funded accounts, a sequence counter, validate() after
every command, and a hash of the state that ignores the command counters."""

from __future__ import annotations

import hashlib
from itertools import chain, islice
from typing import Any

import msgspec
import pytest

from exchange.engine.core import Engine
from exchange.engine.state import DECODER, ENCODER
from exchange.model.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    PlaceOrder,
)
from exchange.model.events import Event
from exchange.model.instruments import load_config
from exchange.model.queries import BalanceList, BookSnapshot, GetBalances, GetBook
from tests.support.reference_engine import StreamGenerator

CONFIG = load_config()
BTC = CONFIG.instruments["BTC-USD"]
REF = BTC.reference_ticks  # 50000.00 in ticks
USD_FUNDS = 10**12  # 1,000,000 USD in micro-dollars
BTC_FUNDS = 10**10  # 100 BTC in satoshi



def recorded_commands(seed: int, n: int) -> list[Command]:
    """The setup and `n` commands of a seeded stream, generated against a real engine (the
    generator aims at live orders by watching events), for tests that replay them."""
    gen = StreamGenerator(CONFIG, seed)
    engine = Engine(CONFIG)
    out: list[Command] = []
    for seq, cmd in enumerate(chain(gen.setup(), islice(gen, n)), start=1):
        out.append(cmd)
        gen.observe(engine.apply(cmd, seq, seq))
    return out

def business_hash(engine: Engine) -> str:
    """state_hash without last_seq and the exec_id counter, which every command moves (a
    rejected place still gets an exec_id): equal exactly when a command changed nothing."""
    state = DECODER.decode(engine.snapshot())
    state = msgspec.structs.replace(state, last_seq=0, next_exec_id=0)
    return hashlib.sha256(ENCODER.encode(state)).hexdigest()


class Driver:
    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine(CONFIG)
        self.seq = self.engine.last_seq

    def do(self, command: Command) -> list[Event]:
        self.seq += 1
        events = self.engine.apply(command, self.seq, self.seq * 1000)
        self.engine.validate()
        return events

    def place(self, account: int = 1, side: str = "buy", qty: int = 10,
              price: int | None = REF, **kw: Any) -> list[Event]:
        kw.setdefault("order_type", "limit" if price is not None else "market")
        kw.setdefault("client_order_id", f"o{self.seq + 1}")
        kw.setdefault("symbol", "BTC-USD")
        return self.do(PlaceOrder(account_id=account, side=side, qty=qty,  # type: ignore[arg-type]
                                  price=price, **kw))

    def cancel(self, account: int = 1, **kw: Any) -> list[Event]:
        kw.setdefault("symbol", "BTC-USD")
        return self.do(CancelOrder(account_id=account, **kw))

    def amend(self, account: int = 1, **kw: Any) -> list[Event]:
        kw.setdefault("symbol", "BTC-USD")
        return self.do(AmendOrder(account_id=account, **kw))

    def bal(self, account: int, asset: str) -> tuple[int, int]:
        got = self.engine.answer(GetBalances(account_id=account))
        assert isinstance(got, BalanceList)
        for b in got.balances:
            if b.asset == asset:
                return b.available, b.held
        raise KeyError(asset)

    def book(self, symbol: str = "BTC-USD") -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        got = self.engine.answer(GetBook(symbol=symbol, depth=100))
        assert isinstance(got, BookSnapshot)
        return got.bids, got.asks


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.fixture
def ex() -> Driver:
    """Accounts 1, 2 and 3, each with 1,000,000 USD, 100 BTC and 100 ETH."""
    d = Driver()
    for i in range(1, 4):
        d.do(CreateAccount(label=f"acct{i}"))
        d.do(Deposit(account_id=i, asset="USD", amount=USD_FUNDS))
        d.do(Deposit(account_id=i, asset="BTC", amount=BTC_FUNDS))
        d.do(Deposit(account_id=i, asset="ETH", amount=BTC_FUNDS))
    return d
