"""The matcher killed and restarted under a connected gateway: requests in flight at the
break answer 5001 (never a false success), /healthz says 503, new requests get 5002, and once
the matcher is back the same sessions trade again without restarting the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import running_exchange, wait_until

SYM = "BTC-USD"


async def test_matcher_killed_and_restarted(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fsync="always") as ex:
        client = await ex.client(await ex.new_account(FUNDS))
        before = await client.place(SYM, "buy", "0.1", "49000.00", client_order_id="before")
        assert (await client.next_report())["seq"] == 1
        proc = ex.matcher.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)  # so the next order is surely in flight
        in_flight = asyncio.create_task(client.request("order.place", {
            "symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "49000.00",
            "client_order_id": "in-flight"}))
        await wait_until(lambda: ex.link.in_flight == 1, 5)
        ex.matcher.kill9()
        async with asyncio.timeout(5):
            answer = await in_flight
        assert answer["status"] == 504 and answer["error"]["code"] == 5001

        await wait_until(lambda: not ex.link.up, 5)
        status, health = await ex.get("/healthz")
        assert status == 503 and health["matcher"] == "down"
        response = await client.request("order.place", {
            "symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1", "price": "49000.00",
            "client_order_id": "while-down"})
        assert response["status"] == 500 and response["error"]["code"] == 5002
        assert "retry_after_ms" in response["error"]
        assert (await client.request("order.status", {"symbol": SYM, "order_id": 1})
                )["error"]["code"] == 5002

        ex.matcher.start()
        await ex.matcher.wait_ready()
        await wait_until(lambda: ex.link.up, 10)
        status, health = await ex.get("/healthz")
        assert status == 200 and health["matcher"] == "up"
        # Same session, no new logon: state survived, order entry and reports resume.
        state = await client.status(SYM, order_id=before["order_id"])
        assert state["status"] == "new"
        after = await client.place(SYM, "buy", "0.1", "49000.00", client_order_id="after")
        assert after["status"] == "new"
        report = await client.next_report()
        assert report["client_order_id"] == "after" and report["seq"] == 2
        assert await client.cancel_all() == 2
