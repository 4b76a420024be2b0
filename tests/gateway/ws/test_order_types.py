"""Stop and iceberg orders, batches and account history over /ws/trade, end to end (real
matcher subprocess, real sockets)."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange

pytestmark = pytest.mark.asyncio(loop_scope="module")

SYM = "BTC-USD"


async def test_stop_limit_waits_then_triggers_with_a_triggered_report(
        shared_exchange: RunningExchange) -> None:
    ex = shared_exchange
    stopper = await ex.client(await ex.new_account(FUNDS))
    seller = await ex.client(await ex.new_account(FUNDS))
    buyer = await ex.client(await ex.new_account(FUNDS))
    placed = await stopper.call("order.place", {
        "symbol": SYM, "side": "buy", "type": "stop_limit", "qty": "0.1", "price": "50100.00",
        "stop_price": "50050.00", "client_order_id": "stop-1"})
    assert placed["status"] == "new"
    state = await stopper.status(SYM, client_order_id="stop-1")
    assert (state["type"], state["stop_price"]) == ("stop_limit", "50050.00")
    new = await stopper.next_report()
    assert (new["exec_type"], new["stop_price"]) == ("new", "50050.00")
    # A trade at the stop price triggers it: it enters as a limit buy and rests.
    await seller.place(SYM, "sell", "0.1", "50050.00", client_order_id="s-1")
    await buyer.place(SYM, "buy", "0.1", "50050.00", client_order_id="b-1")
    triggered = await stopper.next_report()
    assert triggered["exec_type"] == "triggered" and triggered["order_type"] == "limit"
    assert triggered["stop_price"] == "50050.00" and triggered["ord_status"] == "new"
    state = await stopper.status(SYM, client_order_id="stop-1")
    assert state["type"] == "limit" and state["leaves_qty"] == "0.1000"
    # A stop the price already reached is refused.
    response = await stopper.request("order.place", {
        "symbol": SYM, "side": "buy", "type": "stop_market", "qty": "0.1",
        "stop_price": "50000.00", "client_order_id": "stop-2"})
    assert response["error"]["code"] == 1002


async def test_iceberg_shows_its_slice_in_the_book(shared_exchange: RunningExchange) -> None:
    ex = shared_exchange
    a = await ex.client(await ex.new_account(FUNDS))
    placed = await a.call("order.place", {
        "symbol": "ETH-USD", "side": "sell", "type": "limit", "qty": "5", "price": "3150.00",
        "display_qty": "1", "client_order_id": "ice-1"})
    assert placed["status"] == "new"
    state = await a.status("ETH-USD", client_order_id="ice-1")
    assert (state["display_qty"], state["leaves_qty"]) == ("1.000", "5.000")
    response = await a.request("order.place", {
        "symbol": "ETH-USD", "side": "sell", "type": "limit", "qty": "5", "price": "3150.00",
        "display_qty": "5", "client_order_id": "ice-2"})
    assert response["error"]["code"] == 1002  # not less than qty


async def test_batches_answer_each_order_in_order(shared_exchange: RunningExchange) -> None:
    ex = shared_exchange
    a = await ex.client(await ex.new_account(FUNDS))
    response = await a.request("orders.place_batch", {"orders": [
        {"symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "49000.00",
         "client_order_id": "bt-1"},
        {"symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "nope",
         "client_order_id": "bt-2"},
        {"symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "49001.00",
         "client_order_id": "bt-1"},
        {"symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "49002.00",
         "client_order_id": "bt-3"},
    ]})
    results = response["result"]["results"]
    assert [r["status"] for r in results] == [200, 400, 409, 200]
    assert results[0]["result"]["client_order_id"] == "bt-1"
    assert results[1]["error"]["code"] == 1002 and results[2]["error"]["code"] == 3004
    assert results[0]["result"]["engine_seq"] == results[3]["result"]["engine_seq"]
    assert [o["client_order_id"] for o in await a.open_orders(SYM)] == ["bt-1", "bt-3"]
    response = await a.request("orders.cancel_batch", {"orders": [
        {"symbol": SYM, "client_order_id": "bt-3"},
        {"symbol": SYM, "client_order_id": "bt-9"},
        {"symbol": SYM, "order_id": results[0]["result"]["order_id"]},
    ]})
    results = response["result"]["results"]
    assert [r["status"] for r in results] == [200, 404, 200]
    assert results[0]["result"]["status"] == "canceled"
    assert await a.open_orders(SYM) == []
    too_many = await a.request("orders.cancel_batch", {"orders": [
        {"symbol": SYM, "client_order_id": f"x{i}"} for i in range(21)]})
    assert too_many["error"]["code"] == 1002


async def test_account_trades_and_order_history(shared_exchange: RunningExchange) -> None:
    ex = shared_exchange
    seller = await ex.client(await ex.new_account(FUNDS))
    buyer = await ex.client(await ex.new_account(FUNDS))
    await seller.place("ETH-USD", "sell", "2", "3000.00", client_order_id="h-s")
    await buyer.place("ETH-USD", "buy", "1", "3000.00", client_order_id="h-b1")
    await buyer.place("ETH-USD", "buy", "1", "3000.00", client_order_id="h-b2")
    trades = (await buyer.call("account.trades", {"symbol": "ETH-USD"}))["trades"]
    assert [(t["client_order_id"], t["qty"], t["liquidity"]) for t in trades] == [
        ("h-b1", "1.000", "taker"), ("h-b2", "1.000", "taker")]
    assert trades[0]["price"] == "3000.00" and trades[0]["fee_asset"] == "ETH"
    later = (await buyer.call("account.trades", {"from_trade_id": trades[1]["trade_id"]}))
    assert [t["trade_id"] for t in later["trades"]] == [trades[1]["trade_id"]]
    history = (await seller.call("orders.history", {"limit": 5}))["orders"]
    assert [(o["client_order_id"], o["ord_status"]) for o in history] == [("h-s", "filled")]
    history = (await buyer.call("orders.history", {}))["orders"]
    assert [o["client_order_id"] for o in history] == ["h-b2", "h-b1"]  # newest first
