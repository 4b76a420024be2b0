"""Two gateways in front of one matcher: reports reach every session of an account whichever
gateway it is on (Interest), fills between accounts on different gateways included."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange, running_exchange


async def test_reports_cross_gateways(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as one:
        two = RunningExchange(matcher=one.matcher, settings=one.settings)
        await two.start_gateway()
        try:
            maker, taker = await one.new_account(FUNDS), await one.new_account(FUNDS)
            maker_here = await one.client(maker)
            maker_there = await two.client(maker)
            taker_there = await two.client(taker)
            await maker_here.place("BTC-USD", "sell", "0.5", "50000.00", client_order_id="mk")
            await taker_there.place("BTC-USD", "buy", "0.2", "50000.00", client_order_id="tk")
            for client in (maker_here, maker_there):
                reports = [await client.next_report() for _ in range(2)]
                assert [(r["seq"], r["exec_type"], r["client_order_id"]) for r in reports] == [
                    (1, "new", "mk"), (2, "trade", "mk")]
            taker_reports = [await taker_there.next_report() for _ in range(2)]
            assert [r["exec_type"] for r in taker_reports] == ["new", "trade"]
            # A cancel on one gateway is reported on the other too.
            await maker_there.cancel_all()
            for client in (maker_here, maker_there):
                report = await client.next_report()
                assert (report["seq"], report["exec_type"]) == (3, "canceled")
        finally:
            await two.stop_gateway()
