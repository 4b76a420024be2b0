"""FIX sessions that survive reconnects: saved sequence numbers (no 141=Y) are accepted, the
fills that happened while the client was away arrive, a ResendRequest replays what was sent
with PossDupFlag; through a gateway restart and a matcher restart. ClOrdID chains per FIX 4.4.
Every message received is checked against QuickFIX's FIX 4.4 dictionary."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

from aiohttp import web

from gateway.app import FIX_KEY, create_app
from gateway.client import Credentials, TradeClient
from gateway.fix.client import FixClient
from gateway.fix.codec import FixMessage
from tests.support.exchange_harness import (
    RunningExchange,
    limits,
    running_exchange,
    wait_until,
)
from tests.support.fix_dictionary import CheckedFixClient

FUNDS = {"USD": "1000000", "BTC": "100"}
SYM = "BTC-USD"


async def fix_logon(ex: RunningExchange, creds: Credentials, *, next_out: int | None = None,
                    sender: str = "ALICE") -> tuple[FixClient, FixMessage]:
    """A FIX client; with `next_out` it continues the session instead of resetting it."""
    client = await CheckedFixClient.connect("127.0.0.1", ex.fix_port, api_key=creds.api_key,
                                            secret=creds.secret, sender=sender, logon=False)
    if next_out is not None:
        client.next_out = next_out
    reply = await client.logon(creds.api_key, creds.secret, reset=next_out is None)
    return client, reply


def fix_sessions(ex: RunningExchange) -> int:
    """FIX connections the gateway still holds."""
    assert ex.runner is not None
    return len(ex.runner.app[FIX_KEY].connections)


def sell(clordid: str, qty: str = "1") -> list[tuple[int, str]]:
    return [(11, clordid), (55, SYM), (54, "2"), (38, qty), (40, "2"), (44, "50000.00"),
            (59, "1")]


async def bob_buys(ex: RunningExchange, creds: Credentials, qty: str, coid: str) -> None:
    async with await TradeClient.connect(ex.ws_url, api_key=creds.api_key,
                                         secret=creds.secret) as bob:
        await bob.place(SYM, "buy", qty, "50000.00", client_order_id=coid, tif="IOC")


async def test_reconnect_with_saved_numbers_gets_the_fills_missed(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex:
        alice = await ex.new_account(FUNDS)
        bob = await ex.new_account(FUNDS)
        client, reply = await fix_logon(ex, alice)
        assert reply.msg_type == "A"
        await client.send("D", sell("s1"))
        new = await client.expect("8")
        assert (new.get(150), new.get(34)) == ("0", "2")
        # The connection drops (no Logout); the client keeps its numbers.
        saved_out = client.next_out
        await client.close()
        await wait_until(lambda: fix_sessions(ex) == 0)
        # Away: the gateway restarts, Bob buys, the matcher restarts (snapshot), Bob buys,
        # the matcher is killed (journal replay).
        await ex.stop_gateway()
        await ex.start_gateway()
        await bob_buys(ex, bob, "0.2", "b1")
        await ex.restart_matcher()
        await wait_until(lambda: ex.link.up)
        await bob_buys(ex, bob, "0.3", "b2")
        ex.matcher.kill9()
        ex.matcher.start()
        await ex.matcher.wait_ready()
        await wait_until(lambda: ex.link.up)

        client, reply = await fix_logon(ex, alice, next_out=saved_out)
        assert reply.msg_type == "A" and reply.get(34) == "3" and reply.get(141) is None
        fills = [await client.expect("8"), await client.expect("8")]
        assert [(m.get(34), m.get(150), m.get(32), m.get(11)) for m in fills] == [
            ("4", "F", "0.2000", "s1"), ("5", "F", "0.3000", "s1")]
        assert fills[1].get(151) == "0.5000" and fills[1].get(43) is None
        # Live again, and nothing twice: the next fill comes once, numbered next.
        await bob_buys(ex, bob, "0.5", "b3")
        last = await client.expect("8")
        assert (last.get(34), last.get(39), last.get(32)) == ("6", "2", "0.5000")

        # A ResendRequest from 1: the stored ExecutionReports again, PossDupFlag=Y and
        # OrigSendingTime; the Logons gap-filled.
        await client.send("2", [(7, "1"), (16, "0")])
        resent = [await client.expect("4", "8") for _ in range(6)]
        assert [(m.msg_type, m.get(34), m.get(36)) for m in resent] == [
            ("4", "1", "2"), ("8", "2", None), ("4", "3", "4"), ("8", "4", None),
            ("8", "5", None), ("8", "6", None)]
        replays = [resent[1], resent[3], resent[4], resent[5]]
        for original, again in zip([new, *fills, last], replays, strict=True):
            assert again.get(43) == "Y" and again.get(122) == original.get(52)
            assert again.get(17) == original.get(17)
        await client.close()

        # A client that lost its numbers and does not reset is told, as QuickFIX does.
        stale, refused = await fix_logon(ex, alice, next_out=2)
        assert refused.msg_type == "5"
        assert refused.get(58) == f"MsgSeqNum too low, expecting {client.next_out} but received 2"
        await stale.close()


async def test_one_connection_per_session_and_a_new_session_starts_now(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex:
        alice = await ex.new_account(FUNDS)
        first, _ = await fix_logon(ex, alice)
        await first.send("D", sell("s1"))
        await first.expect("8")
        # The same session twice at once: refused.
        second, refused = await fix_logon(ex, alice)
        assert refused.msg_type == "5" and refused.get(58) == "session already logged on"
        await second.close()
        # Another SenderCompID is another session: it starts with the account's reports
        # from now on, not the history.
        other, reply = await fix_logon(ex, alice, sender="ALICE2")
        assert reply.msg_type == "A"
        await first.send("F", [(11, "c1"), (41, "s1"), (55, SYM), (54, "2")])
        report_first = await first.expect("8")
        report_other = await other.expect("8")
        assert report_first.get(17) == report_other.get(17)
        assert report_other.get(34) == "2" and report_other.get(150) == "4"
        # Someone else's key cannot log on as Alice's session.
        mallory = await ex.new_account(FUNDS)
        await first.close()
        await wait_until(lambda: fix_sessions(ex) == 1)
        intruder, refused = await fix_logon(ex, mallory, next_out=3)
        assert refused.msg_type == "5" and refused.get(58) == "logon rejected"
        await intruder.close()
        await other.close()


async def test_clordid_chain_after_replace(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex:
        alice = await ex.new_account(FUNDS)
        client, _ = await fix_logon(ex, alice)
        await client.send("D", sell("r1"))
        order_id = (await client.expect("8")).get(37)
        await client.send("G", [(11, "r2"), (41, "r1"), (55, SYM), (54, "2"), (38, "0.8"),
                                (40, "2"), (44, "50000.00")])
        replaced = await client.expect("8")
        assert (replaced.get(150), replaced.get(11), replaced.get(41)) == ("5", "r2", "r1")
        # The new ClOrdID names the order: a second replace, a status, a cancel.
        await client.send("G", [(11, "r3"), (41, "r2"), (55, SYM), (54, "2"), (38, "0.7"),
                                (40, "2"), (44, "50000.00")])
        again = await client.expect("8")
        assert (again.get(150), again.get(11), again.get(41), again.get(38)) == (
            "5", "r3", "r2", "0.7000")
        await client.send("H", [(11, "r3"), (55, SYM), (54, "2")])
        status = await client.expect("8")
        assert (status.get(150), status.get(37), status.get(11)) == ("I", order_id, "r3")
        await client.send("F", [(11, "r4"), (41, "r3"), (55, SYM), (54, "2")])
        canceled = await client.expect("8")
        assert (canceled.get(150), canceled.get(11), canceled.get(41), canceled.get(37)) == (
            "4", "r4", "r3", order_id)
        # Gone now: naming it again is an unknown order.
        await client.send("F", [(11, "r5"), (41, "r3"), (55, SYM), (54, "2")])
        reject = await client.expect("9")
        assert (reject.get(11), reject.get(41), reject.get(102)) == ("r5", "r3", "1")
        await client.close()


async def test_a_session_resumes_on_another_gateway_sharing_the_store(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex:
        alice = await ex.new_account(FUNDS)
        bob = await ex.new_account(FUNDS)
        # A second gateway process on this host: its own app, the same store directory.
        other = web.AppRunner(await create_app(dataclasses.replace(
            ex.settings, gateway_id="gw-other")), handle_signals=False)
        await other.setup()
        await web.TCPSite(other, "127.0.0.1", 0).start()
        try:
            other_port = other.app[FIX_KEY].port
            client, _ = await fix_logon(ex, alice)
            await client.send("D", sell("s1"))
            assert (await client.expect("8")).get(150) == "0"
            # While gateway one holds the session, gateway two refuses it.
            busy = await CheckedFixClient.connect("127.0.0.1", other_port,
                                                  api_key=alice.api_key, secret=alice.secret,
                                                  sender="ALICE", logon=False)
            busy.next_out = client.next_out
            refused = await busy.logon(alice.api_key, alice.secret, reset=False)
            assert (refused.msg_type, refused.get(58)) == ("5", "session already logged on")
            await busy.close()
            saved_out = client.next_out
            await client.close()
            await wait_until(lambda: fix_sessions(ex) == 0)
            await bob_buys(ex, bob, "0.25", "b1")
            # Back on gateway two with the saved numbers: the session and the fill are there.
            moved = await CheckedFixClient.connect("127.0.0.1", other_port,
                                                   api_key=alice.api_key, secret=alice.secret,
                                                   sender="ALICE", logon=False)
            moved.next_out = saved_out
            reply = await moved.logon(alice.api_key, alice.secret, reset=False)
            assert (reply.msg_type, reply.get(34)) == ("A", "3")
            fill = await moved.expect("8")
            assert (fill.get(34), fill.get(150), fill.get(32)) == ("4", "F", "0.2500")
            await moved.close()
        finally:
            await other.cleanup()


async def test_a_catch_up_the_matcher_does_not_answer_ends_in_a_logout(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True,
                                trade=limits(request_timeout_s=0.5)) as ex:
        alice = await ex.new_account(FUNDS)
        client, _ = await fix_logon(ex, alice)
        saved_out = client.next_out
        await client.close()
        await wait_until(lambda: fix_sessions(ex) == 0)
        assert ex.matcher.proc is not None
        os.kill(ex.matcher.proc.pid, signal.SIGSTOP)
        try:
            stuck, reply = await fix_logon(ex, alice, next_out=saved_out)
            assert reply.msg_type == "A"
            logout = await stuck.expect("5")
            assert logout.get(58) == "reports unavailable, log on again"
            await stuck.close()
        finally:
            os.kill(ex.matcher.proc.pid, signal.SIGCONT)
        await wait_until(lambda: fix_sessions(ex) == 0)
        again, reply = await fix_logon(ex, alice, next_out=saved_out + 1)
        assert reply.msg_type == "A"
        await again.send("D", sell("s1"))
        assert (await again.expect("8")).get(150) == "0"
        await again.close()


async def test_a_replaced_clordid_still_names_the_order_after_a_reconnect(
        tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex:
        alice = await ex.new_account(FUNDS)
        client, _ = await fix_logon(ex, alice)
        await client.send("D", sell("r1"))
        order_id = (await client.expect("8")).get(37)
        await client.send("G", [(11, "r2"), (41, "r1"), (55, SYM), (54, "2"), (38, "0.5"),
                                (40, "2"), (44, "50000.00")])
        assert (await client.expect("8")).get(150) == "5"
        saved_out = client.next_out
        await client.close()
        await wait_until(lambda: fix_sessions(ex) == 0)
        await ex.stop_gateway()
        await ex.start_gateway()
        again, _ = await fix_logon(ex, alice, next_out=saved_out)
        await again.send("F", [(11, "r3"), (41, "r2"), (55, SYM), (54, "2")])
        canceled = await again.expect("8")
        assert (canceled.get(150), canceled.get(11), canceled.get(41), canceled.get(37)) == (
            "4", "r3", "r2", order_id)
        await again.close()
