"""Backpressure with a stalled matcher (SIGSTOP): new orders beyond the window and queue get
4002 with retry_after_ms at once, cancels keep their lane and are never refused, and
everything accepted is answered once the matcher runs again."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gateway.core.matcher_link import LinkLimits
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import running_exchange, wait_until

SYM = "BTC-USD"


def order(i: int) -> dict[str, Any]:
    return {"symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1",
            "price": "49000.00", "client_order_id": f"ov-{i}"}


async def test_overload_refuses_new_orders_but_not_cancels(tmp_path: Path) -> None:
    link = LinkLimits(window=4, queue_size=4, cancel_reserve=2, cancel_queue_size=64,
                      backoff_min_s=0.02, backoff_max_s=0.2)
    async with running_exchange(tmp_path, link=link) as ex:
        client = await ex.client(await ex.new_account(FUNDS))
        resting = [await client.place(SYM, "buy", "0.1", "48000.00", client_order_id=f"r-{i}")
                   for i in range(3)]
        pid = ex.matcher.proc.pid if ex.matcher.proc else 0
        os.kill(pid, signal.SIGSTOP)
        try:
            places = [asyncio.create_task(client.request("order.place", order(i)))
                      for i in range(20)]
            await wait_until(lambda: sum(t.done() for t in places) == 12, 5)
            refused = [t.result() for t in places if t.done()]
            for response in refused:
                assert response["status"] == 503
                assert response["error"]["code"] == 4002
                assert response["error"]["retry_after_ms"] > 0
                assert "rate_limits" in response
            assert ex.link.in_flight == 4 and ex.link.queued == 4
            _, text = await ex.get("/metrics")
            assert 'gateway_matcher_queue_depth{lane="order"} 4.0' in text
            assert "gateway_matcher_in_flight 4.0" in text

            # Cancels are never refused while new orders are: two use the reserve, the
            # rest wait in their own lane, ahead of queued new orders.
            cancels = [asyncio.create_task(client.request(
                "order.cancel", {"symbol": SYM, "order_id": r["order_id"]})) for r in resting]
            cancel_all = asyncio.create_task(client.request("orders.cancel_all",
                                                            {"symbol": "ETH-USD"}))
            await wait_until(lambda: ex.link.in_flight == 6 and ex.link.queued == 6, 5)
            more = await client.request("order.place", order(99))
            assert more["error"]["code"] == 4002
            assert not any(t.done() for t in [*cancels, cancel_all])
        finally:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(10):
            answers = [await t for t in places]
            done_cancels = [await t for t in cancels]
            done_all = await cancel_all
        assert sum(1 for r in answers if r["status"] == 200) == 8
        assert sum(1 for r in answers if r["status"] == 503) == 12
        assert all(r["status"] == 200 and r["result"]["status"] == "canceled"
                   for r in done_cancels)
        assert done_all["status"] == 200
        # Order entry is back to normal.
        assert (await client.place(SYM, "buy", "0.1", "49000.00"))["status"] == "new"
        assert ex.link.in_flight == 0 and ex.link.queued == 0


async def test_request_timeout_answers_5001_and_ignores_the_late_result(tmp_path: Path) -> None:
    from tests.support.exchange_harness import limits

    async with running_exchange(tmp_path, trade=limits(request_timeout_s=0.3)) as ex:
        client = await ex.client(await ex.new_account(FUNDS))
        pid = ex.matcher.proc.pid if ex.matcher.proc else 0
        os.kill(pid, signal.SIGSTOP)
        try:
            late = await client.request("order.place", order(1))
            assert late["status"] == 504 and late["error"]["code"] == 5001
            status = await client.request("order.status", {"symbol": SYM,
                                                           "client_order_id": "ov-1"})
            assert status["error"]["code"] == 5001
        finally:
            os.kill(pid, signal.SIGCONT)
        # The order was journaled after all: order.status tells (the 5001 said "unknown").
        await wait_until(lambda: ex.link.in_flight == 0, 5)
        state = await client.status(SYM, client_order_id="ov-1")
        assert state["status"] == "new"
        report = await client.next_report()
        assert report["client_order_id"] == "ov-1" and report["seq"] == 1
        assert client.pending_reports() == 0
        assert (await client.ping()) == {}
        # Anything answered twice would be queued before the ping's answer by now.
        with pytest.raises(TimeoutError):
            await client.next_unmatched(wait_s=0.05)
