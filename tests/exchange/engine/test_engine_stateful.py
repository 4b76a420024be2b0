"""A hypothesis state machine: engine and reference engine driven by the same commands."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from exchange.engine.core import Engine
from exchange.model.commands import (
    AmendOrder,
    Batch,
    CancelAll,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    HaltSymbol,
    PlaceOrder,
    ResumeSymbol,
    Withdraw,
)
from tests.exchange.conftest import CONFIG
from tests.exchange.engine.test_engine_model import check_same
from tests.support.reference_engine import ReferenceEngine

SYMBOLS = ["BTC-USD", "ETH-BTC"]
accounts = st.integers(0, 4)
symbols = st.sampled_from(SYMBOLS)
coids = st.sampled_from(["a", "b", "c", "d"])
order_ids = st.integers(1, 40)
qtys = st.integers(0, 15)
offsets = st.integers(-8, 8)


class EngineVsReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(CONFIG)
        self.ref = ReferenceEngine(CONFIG)
        self.seq = 0

    def do(self, command: Command) -> None:
        self.seq += 1
        got = self.engine.apply(command, self.seq, self.seq)
        want = self.ref.apply(command, self.seq, self.seq)
        assert got == want, (command, got, want)

    @initialize()
    def fund(self) -> None:
        for i in range(1, 4):
            self.do(CreateAccount())
            for asset, amount in (("USD", 10**9), ("BTC", 10**8), ("ETH", 10**9)):
                self.do(Deposit(account_id=i, asset=asset, amount=amount))

    @rule(account=accounts, symbol=symbols, side=st.sampled_from(["buy", "sell"]),
          market=st.booleans(), qty=qtys, offset=offsets,
          tif=st.sampled_from(["GTC", "GTC", "IOC", "FOK"]), post_only=st.booleans(),
          coid=coids, stp=st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both"]))
    def place(self, account: int, symbol: str, side: str, market: bool, qty: int, offset: int,
              tif: str, post_only: bool, coid: str, stp: str) -> None:
        ref = CONFIG.instruments[symbol].reference_ticks
        self.do(PlaceOrder(
            account_id=account, symbol=symbol, side=side,  # type: ignore[arg-type]
            order_type="market" if market else "limit", qty=qty,
            price=None if market else ref + offset, tif=tif,  # type: ignore[arg-type]
            post_only=post_only and not market and tif == "GTC", client_order_id=coid,
            stp=stp,  # type: ignore[arg-type]
        ))

    @rule(account=accounts, symbol=symbols, side=st.sampled_from(["buy", "sell"]),
          with_price=st.booleans(), qty=qtys, offset=offsets, stop_offset=offsets,
          tif=st.sampled_from(["GTC", "IOC", "FOK"]), coid=coids)
    def place_stop(self, account: int, symbol: str, side: str, with_price: bool, qty: int,
                   offset: int, stop_offset: int, tif: str, coid: str) -> None:
        ref = CONFIG.instruments[symbol].reference_ticks
        self.do(PlaceOrder(
            account_id=account, symbol=symbol, side=side,  # type: ignore[arg-type]
            order_type="stop_limit" if with_price else "stop_market", qty=qty,
            price=ref + offset if with_price else None, tif=tif,  # type: ignore[arg-type]
            client_order_id=coid, stop_price=ref + stop_offset,
        ))

    @rule(account=accounts, symbol=symbols, side=st.sampled_from(["buy", "sell"]), qty=qtys,
          display=st.integers(0, 6), offset=offsets, coid=coids)
    def place_iceberg(self, account: int, symbol: str, side: str, qty: int, display: int,
                      offset: int, coid: str) -> None:
        ref = CONFIG.instruments[symbol].reference_ticks
        self.do(PlaceOrder(
            account_id=account, symbol=symbol, side=side,  # type: ignore[arg-type]
            order_type="limit", qty=qty, price=ref + offset, client_order_id=coid,
            display_qty=display,
        ))

    @rule(account=accounts, symbol=symbols, coid=coids, stop_offset=offsets,
          qty=st.none() | qtys)
    def amend_stop(self, account: int, symbol: str, coid: str, stop_offset: int,
                   qty: int | None) -> None:
        ref = CONFIG.instruments[symbol].reference_ticks
        self.do(AmendOrder(account_id=account, symbol=symbol, client_order_id=coid,
                           new_qty=qty, new_stop_price=ref + stop_offset))

    @rule(account=accounts, symbol=symbols, coids_=st.lists(coids, min_size=0, max_size=4),
          offset=offsets, cancels=st.booleans())
    def batch(self, account: int, symbol: str, coids_: list[str], offset: int,
              cancels: bool) -> None:
        ref = CONFIG.instruments[symbol].reference_ticks
        items: list[PlaceOrder | CancelOrder] = [
            CancelOrder(account_id=account, symbol=symbol, client_order_id=c) if cancels
            else PlaceOrder(account_id=account, symbol=symbol, side="buy", order_type="limit",
                            qty=2, price=ref + offset, client_order_id=c)
            for c in coids_
        ]
        self.do(Batch(commands=tuple(items)))

    @rule(account=accounts, symbol=symbols, order_id=st.none() | order_ids,
          coid=st.none() | coids)
    def cancel(self, account: int, symbol: str, order_id: int | None, coid: str | None) -> None:
        self.do(CancelOrder(account_id=account, symbol=symbol, order_id=order_id,
                            client_order_id=coid))

    @rule(account=accounts, symbol=symbols, order_id=st.none() | order_ids,
          coid=st.none() | coids, qty=st.none() | qtys, offset=st.none() | offsets)
    def amend(self, account: int, symbol: str, order_id: int | None, coid: str | None,
              qty: int | None, offset: int | None) -> None:
        ref = CONFIG.instruments[symbol].reference_ticks
        self.do(AmendOrder(
            account_id=account, symbol=symbol, order_id=order_id, client_order_id=coid,
            new_qty=qty, new_price=None if offset is None else ref + offset,
        ))

    @rule(account=accounts, symbol=st.none() | symbols, disconnect=st.booleans())
    def cancel_all(self, account: int, symbol: str | None, disconnect: bool) -> None:
        self.do(CancelAll(account_id=account, symbol=symbol,
                          reason="disconnect" if disconnect else "user"))

    @rule(account=accounts, asset=st.sampled_from(["USD", "BTC", "ETH", "XYZ"]),
          amount=st.integers(-1, 10**9), deposit=st.booleans())
    def funds(self, account: int, asset: str, amount: int, deposit: bool) -> None:
        cls = Deposit if deposit else Withdraw
        self.do(cls(account_id=account, asset=asset, amount=amount))

    @rule(symbol=symbols, halt=st.booleans())
    def halt(self, symbol: str, halt: bool) -> None:
        self.do(HaltSymbol(symbol=symbol) if halt else ResumeSymbol(symbol=symbol))

    @invariant()
    def same_state(self) -> None:
        check_same(self.engine, self.ref, CONFIG)


TestEngineVsReference = EngineVsReference.TestCase
TestEngineVsReference.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
