"""FIX over the trading core: the WebSocket's deadlines, result codes and cancel-on-disconnect.

A stalled matcher (SIGSTOP) never answers: each FIX request gets the 5001 outcome at the
deadline (ExecutionReport reject, OrderCancelReject or BusinessMessageReject), and the late
answer adds nothing but the order's own execution reports.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.link.client import LinkClient
from exchange.model.queries import GetOpenOrders, OrderList
from gateway.app import TRADE_KEY
from gateway.core import auth
from gateway.core.matcher_link import LinkLimits
from gateway.fix.client import FixClient
from gateway.fix.session import sending_time
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange, limits, running_exchange, wait_until

SYM = "BTC-USD"


@pytest.fixture
async def ex(tmp_path: Path) -> AsyncIterator[RunningExchange]:
    async with running_exchange(tmp_path, fix=True,
                                trade=limits(request_timeout_s=0.3)) as running:
        yield running


async def connect(ex: RunningExchange, api_key: str, secret: str, **kw: object) -> FixClient:
    return await FixClient.connect("127.0.0.1", ex.fix_port, api_key=api_key,
                                   secret=secret, **kw)  # type: ignore[arg-type]


def limit(clordid: str, price: str = "49000.00") -> list[tuple[int, str]]:
    return [(11, clordid), (55, SYM), (54, "1"), (38, "0.1"), (40, "2"), (44, price),
            (59, "1")]


async def open_ids(ex: RunningExchange, account_id: int) -> set[str]:
    link = await LinkClient.connect(ex.matcher.address, "test-probe")
    try:
        answer = await link.ask(GetOpenOrders(account_id=account_id))
    finally:
        await link.close()
    assert isinstance(answer, OrderList)
    return {o.client_order_id for o in answer.orders}


async def test_fix_requests_unanswered_by_the_deadline_get_5001(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await connect(ex, creds.api_key, creds.secret)
    await client.send("D", limit("rest"))
    resting = await client.expect("8")
    assert resting.get(150) == "0"
    pid = ex.matcher.proc.pid if ex.matcher.proc else 0
    os.kill(pid, signal.SIGSTOP)
    try:
        await client.send("D", limit("late"))
        placed = await client.expect("8", "j")
        assert placed.msg_type == "8" and placed.get(150) == "8" and placed.get(37) == "NONE"
        assert placed.get(11) == "late"
        assert (placed.get(58) or "").startswith("5001 ") and "outcome unknown" in (
            placed.get(58) or "")

        await client.send("F", [(11, "cx"), (41, "rest"), (55, SYM), (54, "1")])
        canceled = await client.expect("9", "8", "j")
        assert canceled.msg_type == "9" and canceled.get(434) == "1"
        assert (canceled.get(58) or "").startswith("5001 ")

        await client.send("H", [(11, "rest"), (55, SYM), (54, "1")])
        status = await client.expect("j", "8")
        assert status.msg_type == "j" and status.get(380) == "4"
        assert (status.get(58) or "").startswith("5001 ")
    finally:
        os.kill(pid, signal.SIGCONT)
    # The matcher took both after all: their reports come, the late answers add nothing.
    first, second = await client.expect("8"), await client.expect("8")
    assert (first.get(11), first.get(150)) == ("late", "0")
    # FIX 4.4: a cancel's report carries the cancel's ClOrdID and names the original in 41.
    assert (second.get(11), second.get(41), second.get(150)) == ("cx", "rest", "4")
    await wait_until(lambda: ex.link.in_flight == 0, 5)
    await client.send("1", [(112, "after")])
    answer = await client.expect("0")  # anything but a heartbeat first fails here
    while answer.get(112) != "after":
        answer = await client.expect("0")
    assert await open_ids(ex, creds.account_id) == {"late"}
    await client.close()


async def test_fix_and_websocket_refuse_alike(tmp_path: Path) -> None:
    """Overload (4002 with retry_after_ms), from the one mapping, on both transports."""
    link = LinkLimits(window=1, queue_size=1, cancel_reserve=1, backoff_min_s=0.02,
                      backoff_max_s=0.2)
    async with running_exchange(tmp_path, fix=True, link=link) as ex:
        creds = await ex.new_account(FUNDS)
        ws = await ex.client(creds)
        fix = await connect(ex, creds.api_key, creds.secret)
        pid = ex.matcher.proc.pid if ex.matcher.proc else 0
        os.kill(pid, signal.SIGSTOP)
        try:
            waiting = [asyncio.create_task(ws.request("order.place", {
                "symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1",
                "price": "49000.00", "client_order_id": f"w-{i}"})) for i in range(2)]
            await wait_until(lambda: ex.link.in_flight == 1 and ex.link.queued == 1, 5)
            refused = await ws.request("order.place", {
                "symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1",
                "price": "49000.00", "client_order_id": "w-x"})
            await fix.send("D", limit("f-x"))
            fix_refused = await fix.expect("8")
        finally:
            os.kill(pid, signal.SIGCONT)
        error = refused["error"]
        assert error["code"] == 4002
        assert fix_refused.get(150) == "8" and fix_refused.get(37) == "NONE"
        assert fix_refused.get(58) == (f"{error['code']} {error['msg']} "
                                       f"retry_after_ms={error['retry_after_ms']}")
        await asyncio.gather(*waiting)
        await fix.close()


async def test_fix_session_scoped_cancel_on_disconnect_keeps_other_sessions_orders(
        ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    ws = await ex.client(creds)
    await ws.place(SYM, "buy", "0.1", "49000.00", client_order_id="ws-1")
    fix = await connect(ex, creds.api_key, creds.secret, cancel_on_disconnect="S")
    await fix.send("D", limit("fix-1"))
    assert (await fix.expect("8")).get(150) == "0"
    assert await open_ids(ex, creds.account_id) == {"ws-1", "fix-1"}
    await fix.close()
    deadline = asyncio.get_running_loop().time() + 1.0
    while await open_ids(ex, creds.account_id) != {"ws-1"}:
        assert asyncio.get_running_loop().time() < deadline, "FIX session's order still open"
        await asyncio.sleep(0.02)
    report = await ws.next_report()
    while report["client_order_id"] != "fix-1" or report["exec_type"] != "canceled":
        report = await ws.next_report()
    assert report["cancel_reason"] == "disconnect"


async def test_a_logon_checked_after_its_connection_closed_leaves_nothing_behind(
        ex: RunningExchange) -> None:
    """The key lookup waits for a stalled matcher; the client hangs up meanwhile."""
    creds = await ex.new_account(FUNDS)
    ws = await ex.client(creds)
    await ws.place(SYM, "buy", "0.1", "49000.00", client_order_id="keep")
    assert ex.runner is not None
    core = ex.runner.app[TRADE_KEY]
    core.keys = type(core.keys)()  # forget the key, so the FIX logon has to ask the matcher
    ws_session = next(iter(core.sessions.all))
    client = await connect(ex, "", "", logon=False)
    sent_at = sending_time(time.time())
    sig = auth.sign_logon(creds.secret, sent_at, client.sender, creds.api_key)
    pid = ex.matcher.proc.pid if ex.matcher.proc else 0
    os.kill(pid, signal.SIGSTOP)
    try:
        await client.send("A", [(98, "0"), (108, "30"), (553, creds.api_key),
                                (95, str(len(sig))), (96, sig), (8013, "Y"), (141, "Y")],
                          when=sent_at)
        await wait_until(lambda: len(core.sessions) == 2, 5)
        await client.close()
        await wait_until(lambda: len(core.sessions) == 1, 5)
    finally:
        os.kill(pid, signal.SIGCONT)
    # The key's answer comes once the matcher runs again, for a connection that is gone.
    await wait_until(lambda: core.keys.get(creds.api_key) is not None, 5)
    await wait_until(lambda: core.unanswered == 0 and ex.link.in_flight == 0, 5)
    assert core.sessions.all == {ws_session}
    assert core.sessions.by_account == {creds.account_id: {ws_session}}
    assert core.sessions.per_key == {creds.api_key: 1}
    # Its 8013=Y was never accepted: nothing is canceled for it.
    assert await open_ids(ex, creds.account_id) == {"keep"}


async def test_fix_sessions_are_counted_with_the_websocket_ones(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    ws = await ex.client(creds)
    fix = await connect(ex, creds.api_key, creds.secret)
    _, text = await ex.get("/metrics")
    assert "gateway_trade_sessions 2.0" in text
    await fix.close()
    await wait_until(lambda: len(ex.runner.app[TRADE_KEY].sessions) == 1, 5)  # type: ignore[union-attr]
    _, text = await ex.get("/metrics")
    assert "gateway_trade_sessions 1.0" in text
    await ws.close()
