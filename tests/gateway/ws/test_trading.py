"""Every /ws/trade method end to end (real matcher subprocess, real sockets), two accounts
trading with each other, fees and balances, the business error codes, cross-account isolation,
ids echoed and rate_limits on every response."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.client import ExchangeError, TradeClient
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange

pytestmark = pytest.mark.asyncio(loop_scope="module")

SYM = "BTC-USD"


async def pair(ex: RunningExchange) -> tuple[TradeClient, TradeClient]:
    a = await ex.client(await ex.new_account(FUNDS))
    b = await ex.client(await ex.new_account(FUNDS))
    return a, b


async def error_of(client: TradeClient, method: str, params: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    response = await client.request(method, params)
    assert "error" in response, response
    assert "result" not in response
    return response


async def test_ping_and_envelope(shared_exchange: RunningExchange) -> None:
    anonymous = await shared_exchange.client()
    response = await anonymous.request("ping", request_id="before")
    assert response["id"] == "before" and response["error"]["code"] == 2001
    client = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    response = await client.request("ping", request_id="abc-1")
    assert response["id"] == "abc-1"
    assert response["status"] == 200
    assert response["result"] == {}
    limits = response["rate_limits"]
    assert limits[0]["type"] == "orders"
    assert {"type", "window_ms", "limit", "count"} <= set(limits[0])
    response = await client.request("ping", request_id=7)
    assert response["id"] == 7


async def test_two_accounts_trade_fills_fees_and_balances(
        shared_exchange: RunningExchange) -> None:
    seller, buyer = await pair(shared_exchange)
    placed = await seller.place(SYM, "sell", "0.5000", "50000.00", client_order_id="s-1")
    assert placed["status"] == "new"
    assert isinstance(placed["order_id"], int)
    assert placed["client_order_id"] == "s-1"
    assert isinstance(placed["engine_seq"], int)
    taken = await buyer.place(SYM, "buy", "0.2", "50000.00", client_order_id="b-1")
    assert taken["status"] == "filled"
    assert taken["engine_seq"] > placed["engine_seq"]

    new = await seller.next_report()
    assert (new["exec_type"], new["ord_status"], new["seq"]) == ("new", "new", 1)
    fill = await seller.next_report()
    assert fill["seq"] == 2
    assert fill["exec_type"] == "trade" and fill["ord_status"] == "partially_filled"
    assert fill["last_qty"] == "0.2000" and fill["last_px"] == "50000.00"
    assert fill["cum_qty"] == "0.2000" and fill["leaves_qty"] == "0.3000"
    assert fill["avg_px"] == "50000.00" and fill["liquidity"] == "maker"
    # maker 10 bps of 10000 USD notional, in the quote asset it receives
    assert fill["fee"] == "10.000000" and fill["fee_asset"] == "USD"

    b_new = await buyer.next_report()
    b_fill = await buyer.next_report()
    assert b_new["exec_type"] == "new" and b_fill["exec_type"] == "trade"
    assert b_fill["ord_status"] == "filled" and b_fill["liquidity"] == "taker"
    assert b_fill["fee"] == "0.00040000" and b_fill["fee_asset"] == "BTC"  # 20 bps of 0.2
    for report in (new, fill, b_new, b_fill):
        assert set(report) >= {
            "type", "seq", "exec_id", "order_id", "client_order_id", "symbol", "side",
            "exec_type", "ord_status", "price", "qty", "last_qty", "last_px", "cum_qty",
            "leaves_qty", "avg_px", "liquidity", "fee", "fee_asset", "ts"}
        assert report["price"] == "50000.00" and isinstance(report["ts"], int)

    sb, bb = await seller.balances(), await buyer.balances()
    assert sb["USD"] == {"available": str(Decimal("1010000") - 10) + ".000000",
                         "held": "0.000000"}
    assert sb["BTC"] == {"available": "99.50000000", "held": "0.30000000"}
    assert bb["USD"]["available"] == "990000.000000"
    assert bb["BTC"]["available"] == "100.19960000"
    assert await seller.cancel_all(SYM) == 1


async def test_status_open_amend_cancel(shared_exchange: RunningExchange) -> None:
    a = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    placed = await a.place(SYM, "buy", "1", "49000.00", client_order_id="o-1")
    oid = placed["order_id"]
    state = await a.status(SYM, order_id=oid)
    assert state["order_id"] == oid and state["client_order_id"] == "o-1"
    assert state["status"] == "new" and state["qty"] == "1.0000" and state["price"] == "49000.00"
    assert (await a.status(SYM, client_order_id="o-1"))["order_id"] == oid
    opened = await a.open_orders()
    assert [o["order_id"] for o in opened] == [oid]
    assert await a.open_orders("ETH-USD") == []

    amended = await a.amend(SYM, order_id=oid, new_qty="0.5")
    assert amended == {"order_id": oid, "client_order_id": "o-1", "status": "new"}
    amended = await a.amend(SYM, client_order_id="o-1", new_price="49001.00")
    assert amended["status"] == "new"
    state = await a.status(SYM, order_id=oid)
    assert (state["qty"], state["price"]) == ("0.5000", "49001.00")
    assert (await a.balances())["USD"]["held"] == "24500.500000"

    canceled = await a.cancel(SYM, client_order_id="o-1")
    assert canceled["order_id"] == oid and canceled["status"] == "canceled"
    assert (await a.status(SYM, order_id=oid))["status"] == "canceled"
    assert await a.open_orders() == []
    kinds = [(await a.next_report())["exec_type"] for _ in range(4)]
    assert kinds == ["new", "replaced", "replaced", "canceled"]
    assert (await a.balances())["USD"]["held"] == "0.000000"


async def test_cancel_all_counts(shared_exchange: RunningExchange) -> None:
    a = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    for i in range(3):
        await a.place(SYM, "buy", "0.1", f"4900{i}.00", client_order_id=f"ca-{i}")
    await a.place("ETH-USD", "sell", "1", "3100.00", client_order_id="ca-eth")
    assert await a.cancel_all(SYM) == 3
    assert [o["symbol"] for o in await a.open_orders()] == ["ETH-USD"]
    assert await a.cancel_all() == 1
    assert await a.cancel_all() == 0


async def test_reports_to_every_session_of_the_account(
        shared_exchange: RunningExchange) -> None:
    creds = await shared_exchange.new_account(FUNDS)
    one = await shared_exchange.client(creds)
    two = await shared_exchange.client(creds)
    other = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    for i in range(5):
        await one.place(SYM, "buy", "0.1", "49500.00", client_order_id=f"m-{i}")
    await two.cancel_all()
    for client in (one, two):
        seqs, kinds = [], []
        for _ in range(10):
            report = await client.next_report()
            seqs.append(report["seq"])
            kinds.append(report["exec_type"])
        assert seqs == list(range(1, 11))
        assert kinds == ["new"] * 5 + ["canceled"] * 5
    assert other.pending_reports() == 0


async def test_business_error_codes(shared_exchange: RunningExchange) -> None:
    a, b = await pair(shared_exchange)
    poor = await shared_exchange.client(await shared_exchange.new_account({"USD": "10"}))

    async def code_of(client: TradeClient, **params: Any) -> int:
        params.setdefault("symbol", SYM)
        params.setdefault("client_order_id", f"e-{id(params)}")
        response = await client.request("order.place", params)
        assert "error" in response, response
        return int(response["error"]["code"])

    assert await code_of(poor, side="buy", type="limit", qty="1", price="50000.00") == 3001
    assert await code_of(a, side="buy", type="limit", qty="1", price="60000.00") == 3002
    await b.place(SYM, "sell", "0.1", "50100.00", client_order_id="rest-1")
    assert await code_of(a, side="buy", type="limit", qty="0.1", price="50100.00",
                         post_only=True) == 3003
    await a.place(SYM, "buy", "0.1", "49000.00", client_order_id="dup")
    response = await a.request("order.place", {"symbol": SYM, "side": "buy", "type": "limit",
                                               "qty": "0.1", "price": "49000.00",
                                               "client_order_id": "dup"})
    assert response["status"] == 409 and response["error"]["code"] == 3004
    assert len([o for o in await a.open_orders() if o["client_order_id"] == "dup"]) == 1
    # FOK for more than rests: 3006; a market order against an empty side: 3006.
    assert await code_of(a, side="buy", type="limit", qty="5", price="50100.00",
                         tif="FOK") == 3006
    assert await code_of(a, side="buy", type="market", qty="0.1",
                         symbol="ETH-BTC") == 3006
    response = await a.request("order.cancel", {"symbol": SYM, "order_id": 999_999_999})
    assert response["status"] == 404 and response["error"]["code"] == 3005
    await a.cancel_all()
    await b.cancel_all()


async def test_ioc_and_market_orders(shared_exchange: RunningExchange) -> None:
    a, b = await pair(shared_exchange)
    await b.place("ETH-USD", "sell", "2", "3000.00", client_order_id="mk-1")
    market = await a.place("ETH-USD", "buy", "1")
    assert market["status"] == "filled"
    ioc = await a.place("ETH-USD", "buy", "5", "3000.00", tif="IOC")
    assert ioc["status"] in ("canceled", "expired")
    state = await a.status("ETH-USD", order_id=ioc["order_id"])
    assert state["cum_qty"] == "1.000" and state["leaves_qty"] == "0.000"
    await b.cancel_all()


async def test_other_accounts_orders_answer_as_unknown(
        shared_exchange: RunningExchange) -> None:
    owner, intruder = await pair(shared_exchange)
    placed = await owner.place(SYM, "buy", "0.1", "49000.00", client_order_id="mine")
    oid = placed["order_id"]
    unknown_oid = 987_654_321

    async def answers(order_ref: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for method, extra in (("order.cancel", {}), ("order.status", {}),
                              ("order.amend", {"new_qty": "0.05"})):
            response = await intruder.request(method, {"symbol": SYM, **order_ref, **extra})
            out.append({"status": response["status"], "error": response["error"]})
        return out

    assert await answers({"order_id": oid}) == await answers({"order_id": unknown_oid})
    assert await answers({"client_order_id": "mine"}) == await answers(
        {"client_order_id": "nobody-has-this"})
    assert all(a["error"]["code"] == 3005 for a in await answers({"order_id": oid}))
    assert (await owner.status(SYM, order_id=oid))["status"] == "new"
    assert await owner.cancel_all() == 1


async def test_validation_codes(shared_exchange: RunningExchange) -> None:
    a = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    base = {"symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "50000.00",
            "client_order_id": "v-1"}
    bad_values: list[dict[str, Any]] = [
        {"price": "50000.001"}, {"price": "0"}, {"price": "-1"}, {"price": "NaN"},
        {"price": "Inf"}, {"price": "1e3"}, {"price": 50000}, {"price": " 50000.00"},
        {"qty": "0.00001"}, {"qty": "0"}, {"qty": "1001"}, {"qty": "0.00015"},
        {"side": "long"}, {"type": "stop"}, {"tif": "DAY"}, {"stp": "none"},
        {"post_only": "yes"}, {"client_order_id": "x" * 37}, {"client_order_id": ""},
        {"type": "market", "price": "50000.00"},
    ]
    for change in bad_values:
        response = await a.request("order.place", {**base, **change})
        assert response["status"] == 400, (change, response)
        assert response["error"]["code"] == 1002, (change, response)
    for params in ({k: v for k, v in base.items() if k != "qty"},
                   {k: v for k, v in base.items() if k != "client_order_id"},
                   {**base, "colour": "red"}):
        assert (await a.request("order.place", params))["error"]["code"] == 1001
    response = await a.request("order.place", {**base, "symbol": "DOGE-USD"})
    assert response["error"]["code"] == 1003
    assert (await a.request("order.cancel", {"symbol": SYM}))["error"]["code"] == 1001
    assert (await a.request("order.amend", {"symbol": SYM, "order_id": 1})
            )["error"]["code"] == 1001
    assert (await a.request("order.status", {"symbol": SYM, "order_id": "1"})
            )["error"]["code"] == 1002
    assert (await a.request("orders.open", {"symbol": "NOPE"}))["error"]["code"] == 1003
    assert await a.open_orders() == []  # nothing reached the engine


async def test_malformed_messages(shared_exchange: RunningExchange) -> None:
    a = await shared_exchange.client()
    for text, echoed in (("not json", None), ("[1,2]", None), ('{"id": 5}', 5),
                         ('{"id": 6, "method": "order.fly"}', 6),
                         ('{"id": 7, "method": "ping", "params": []}', 7),
                         ('{"method": "ping"}', None), ('{"id": 1.5, "method": "ping"}', None)):
        await a.send_raw(text)
        fut_response = await a.next_unmatched()
        assert fut_response["status"] == 400, text
        assert fut_response["error"]["code"] == 1001, text
        assert fut_response["id"] == echoed, text
        assert "rate_limits" in fut_response
    assert (await a.request("ping"))["error"]["code"] == 2001  # still answering


async def test_not_logged_on_and_permissions(shared_exchange: RunningExchange) -> None:
    anonymous = await shared_exchange.client()
    for method in ("order.place", "order.cancel", "order.amend", "order.status",
                   "orders.open", "orders.cancel_all", "account.balances"):
        response = await anonymous.request(method, {"symbol": SYM})
        assert response["status"] == 401 and response["error"]["code"] == 2001, method
    reader = await shared_exchange.client(
        await shared_exchange.new_account(FUNDS, permissions=("read",)))
    response = await reader.request("order.place", {
        "symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "50000.00",
        "client_order_id": "p-1"})
    assert response["status"] == 403 and response["error"]["code"] == 2003
    assert (await reader.request("orders.cancel_all"))["error"]["code"] == 2003
    assert "USD" in await reader.balances()
    trader = await shared_exchange.client(
        await shared_exchange.new_account(FUNDS, permissions=("trade",)))
    assert (await trader.request("account.balances"))["error"]["code"] == 2003
    assert (await trader.place(SYM, "buy", "0.1", "49000.00"))["status"] == "new"
    await trader.cancel_all()


async def test_logon_failures_are_all_2002(shared_exchange: RunningExchange) -> None:
    creds = await shared_exchange.new_account(FUNDS)
    client = await shared_exchange.client()
    import time

    now = time.time_ns() // 1_000_000
    failures: list[dict[str, Any]] = [
        {"secret": "0" * 64},  # bad signature
        {"api_key": "no-such-key"},  # unknown key
        {"timestamp": now - 6_000},  # stale
        {"timestamp": now + 6_000},  # from the future
    ]
    messages = set()
    for change in failures:
        secret = change.get("secret", creds.secret)
        api_key = change.get("api_key", creds.api_key)
        with pytest.raises(ExchangeError) as info:
            await client.logon(str(api_key), str(secret),
                               timestamp=int(change.get("timestamp", now)))
        assert (info.value.code, info.value.status) == (2002, 401)
        messages.add(info.value.msg)
    assert len(messages) == 1  # never says which part failed
    # Replay: the same nonce twice within the window.
    first = await shared_exchange.client()
    await first.logon(creds.api_key, creds.secret, timestamp=now, nonce="once-only")
    with pytest.raises(ExchangeError) as info:
        await client.logon(creds.api_key, creds.secret, timestamp=now, nonce="once-only")
    assert info.value.code == 2002 and info.value.msg in messages
    response = await client.request("session.logon", {"api_key": creds.api_key})
    assert response["error"]["code"] == 2002
    # Still usable afterwards with a good logon.
    await client.logon(creds.api_key, creds.secret)
    assert "USD" in await client.balances()
    response = await client.request("session.logon", {"api_key": creds.api_key})
    assert response["error"]["code"] == 1001  # already logged on


async def test_rest_endpoints(shared_exchange: RunningExchange) -> None:
    a = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    await a.place("ETH-BTC", "buy", "1.5", "0.05900", client_order_id="r-1")
    await a.place("ETH-BTC", "sell", "2", "0.06100", client_order_id="r-2")
    status, body = await shared_exchange.get("/api/instruments")
    assert status == 200
    symbols = {i["symbol"]: i for i in body["instruments"]}
    assert symbols["BTC-USD"]["tick_size"] == "0.01"
    status, book = await shared_exchange.get("/api/book/ETH-BTC?depth=5")
    assert status == 200
    assert book["bids"] == [["0.05900", "1.500"]] and book["asks"] == [["0.06100", "2.000"]]
    assert isinstance(book["seq"], int) and book["seq"] > 0
    import zlib

    assert book["checksum"] == zlib.crc32(b"61002000" + b"59001500")
    await a.place("ETH-BTC", "buy", "1", "0.05800", client_order_id="r-3")
    status, top = await shared_exchange.get("/api/book/ETH-BTC?depth=1")
    assert top["bids"] == [["0.05900", "1.500"]]
    # The checksum still covers the top 10 levels, not just the `depth` shown.
    assert top["checksum"] == zlib.crc32(b"61002000" + b"59001500" + b"58001000")
    assert (await shared_exchange.get("/api/book/NOPE"))[0] == 400
    assert (await shared_exchange.get("/api/book/ETH-BTC?depth=0"))[0] == 400
    status, trades = await shared_exchange.get("/api/trades/BTC-USD?limit=2")
    assert status == 200 and len(trades["trades"]) <= 2
    status, health = await shared_exchange.get("/healthz")
    assert status == 200 and health["matcher"] == "up"
    assert health["market_data"]["feed_connected"] is True
    status, text = await shared_exchange.get("/metrics")
    assert status == 200
    assert 'gateway_requests_total{code="200",method="order.place"}' not in text  # codes, not
    assert 'gateway_requests_total{code="0",method="order.place"}' in text
    assert "gateway_ack_latency_seconds_bucket" in text
    assert "gateway_matcher_queue_depth" in text and "gateway_matcher_in_flight" in text
    assert "gateway_trade_sessions" in text and "gateway_ws_bytes_in_total" in text
    # The per-message counters are tallied as ints and synced per scrape: they must move.
    placed_before = _sample(text, 'gateway_requests_total{code="0",method="order.place"}')
    in_before = _sample(text, 'gateway_ws_messages_in_total{endpoint="trade"}')
    out_before = _sample(text, 'gateway_ws_messages_out_total{endpoint="trade"}')
    for i in range(3):
        await a.place("ETH-BTC", "buy", "1", "0.05800", client_order_id=f"tally-{i}")
    _, text = await shared_exchange.get("/metrics")
    assert _sample(text, 'gateway_requests_total{code="0",method="order.place"}') \
        >= placed_before + 3
    assert _sample(text, 'gateway_ws_messages_in_total{endpoint="trade"}') >= in_before + 3
    assert _sample(text, 'gateway_ws_messages_out_total{endpoint="trade"}') >= out_before + 6
    await a.cancel_all()


def _sample(text: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(name + " "))


async def test_self_trade_prevention(shared_exchange: RunningExchange) -> None:
    a = await shared_exchange.client(await shared_exchange.new_account(FUNDS))
    resting = await a.place("ETH-USD", "sell", "1", "3000.00", client_order_id="stp-old")
    newest = await a.place("ETH-USD", "buy", "1", "3000.00", client_order_id="stp-new",
                           stp="cancel_oldest")
    assert newest["status"] == "new"
    assert (await a.status("ETH-USD", order_id=resting["order_id"]))["status"] == "canceled"
    reports = [await a.next_report() for _ in range(3)]
    canceled = [r for r in reports if r["exec_type"] == "canceled"]
    assert [(r["client_order_id"], r["cancel_reason"]) for r in canceled] == [
        ("stp-old", "stp")]
    again = await a.place("ETH-USD", "sell", "1", "3000.00", client_order_id="stp-x")
    assert again["status"] == "canceled"  # cancel_newest (the default) cancels the taker
    assert await a.cancel_all() == 1
