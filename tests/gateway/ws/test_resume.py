"""Execution reports over WebSocket: an account-level contiguous sequence, replayed after a
reconnect (through a gateway restart and a matcher restart) with nothing missed or doubled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.client import ExchangeError, ReportsGap, TradeClient
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange, running_exchange, wait_until

SYM = "BTC-USD"


async def drain(client: TradeClient, until_seq: int, wait_s: float = 10.0) -> list[dict[str, Any]]:
    """Reports until one with account_seq `until_seq` (reading them all in order)."""
    got: list[dict[str, Any]] = []
    while not got or got[-1]["account_seq"] < until_seq:
        got.append(await client.next_report(wait_s=wait_s))
    return got


async def bob_trades(ex: RunningExchange, bob_creds: Any, qtys: list[str]) -> None:
    async with await TradeClient.connect(ex.ws_url, api_key=bob_creds.api_key,
                                         secret=bob_creds.secret) as bob:
        for i, qty in enumerate(qtys):
            await bob.place(SYM, "buy", qty, "50000.00", client_order_id=f"bob-{i}",
                            tif="IOC")


async def test_reports_carry_the_account_sequence_on_every_session(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        alice = await ex.new_account(FUNDS)
        one = await ex.client(alice)
        two = await ex.client(alice)
        await one.place(SYM, "buy", "0.1", "49000.00", client_order_id="a-1")
        await two.place(SYM, "buy", "0.1", "49000.00", client_order_id="a-2")
        await one.cancel(SYM, client_order_id="a-1")
        seen_one = await drain(one, 3)
        seen_two = await drain(two, 3)
        assert [r["account_seq"] for r in seen_one] == [1, 2, 3]
        assert [(r["account_seq"], r["exec_id"]) for r in seen_one] == [
            (r["account_seq"], r["exec_id"]) for r in seen_two]
        page = await one.call("executions.replay", {"after_seq": 1, "limit": 1})
        assert page["last_seq"] == 3 and page["first_kept_seq"] == 1
        assert page["more"] is True and page["gap"] is False
        assert [r["account_seq"] for r in page["reports"]] == [2]
        assert page["reports"][0]["exec_id"] == seen_one[1]["exec_id"]
        assert "seq" not in page["reports"][0]
        for bad in ({"limit": 0}, {"limit": 501}, {"after_seq": -1}, {"after_seq": "1"}):
            with pytest.raises(ExchangeError) as err:
                await one.call("executions.replay", bad)
            assert err.value.code == 1002
        with pytest.raises(ExchangeError) as err:
            await one.call("executions.replay", {"from": 1})
        assert err.value.code == 1001


async def test_reconnect_after_gateway_and_matcher_restart_misses_nothing(
        tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        alice_creds = await ex.new_account(FUNDS)
        bob_creds = await ex.new_account(FUNDS)
        alice = await TradeClient.connect(ex.ws_url, api_key=alice_creds.api_key,
                                          secret=alice_creds.secret)
        try:
            await alice.place(SYM, "sell", "1", "50000.00", client_order_id="ask-1")
            assert [r["account_seq"] for r in await drain(alice, 1)] == [1]
            # Alice is away: the gateway stops, the matcher restarts (snapshot on stop),
            # Bob takes part of her order through a new gateway, the matcher is killed
            # (journal replay), Bob takes more.
            await ex.stop_gateway()
            await alice.wait_closed()
            await ex.restart_matcher()
            await ex.start_gateway()
            await bob_trades(ex, bob_creds, ["0.3"])
            ex.matcher.kill9()
            ex.matcher.start()
            await ex.matcher.wait_ready()
            await wait_until(lambda: ex.link.up)
            await bob_trades(ex, bob_creds, ["0.2"])
            await alice.reconnect()
            missed = await drain(alice, 3)
            assert [(r["account_seq"], r["exec_type"], r["last_qty"]) for r in missed] == [
                (2, "trade", "0.3000"), (3, "trade", "0.2000")]
            # Live again: the next fill is pushed once, right after.
            await bob_trades(ex, bob_creds, ["0.5"])
            live = await drain(alice, 4)
            assert [(r["account_seq"], r["ord_status"]) for r in live] == [(4, "filled")]
            assert alice.duplicate_reports == 0 and alice.pending_reports() == 0
        finally:
            await alice.close()


async def test_auto_reconnect_keeps_the_sequence_contiguous(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        alice_creds = await ex.new_account(FUNDS)
        bob_creds = await ex.new_account(FUNDS)
        alice = await TradeClient.connect(ex.ws_url, api_key=alice_creds.api_key,
                                          secret=alice_creds.secret, auto_reconnect=True)
        try:
            await alice.place(SYM, "sell", "2", "50000.00", client_order_id="ask-1")
            await ex.stop_gateway()
            await ex.start_gateway()
            # Bob trades while Alice's client is still finding its way back (or already is:
            # either way every report must arrive exactly once, in order).
            await bob_trades(ex, bob_creds, ["0.1"] * 10)
            await wait_until(lambda: alice.reconnects >= 1)
            reports = await drain(alice, 11)
            assert [r["account_seq"] for r in reports] == list(range(1, 12))
            assert reports[-1]["cum_qty"] == "1.0000"
        finally:
            await alice.close()


async def test_resume_from_a_saved_sequence_and_the_gap_past_retention(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, matcher_args=["--reports-kept", "4"]) as ex:
        alice = await ex.new_account(FUNDS)
        first = await ex.client(alice)
        for i in range(6):
            await first.place(SYM, "buy", "0.1", "49000.00", client_order_id=f"b-{i}")
        await drain(first, 6)
        # A new process that had handled up to 3: gets 4, 5, 6 and nothing else.
        resumed = await ex.client(alice, resume_after=3)
        assert [r["account_seq"] for r in await drain(resumed, 6)] == [4, 5, 6]
        assert resumed.pending_reports() == 0
        # Only the newest 4 are kept: from 1 there is a gap, which the client reports.
        with pytest.raises(ReportsGap) as gap:
            await ex.client(alice, resume_after=1)
        assert gap.value.first_kept == 3
