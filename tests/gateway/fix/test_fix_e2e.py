"""FIX 4.4 order entry end to end: a real matcher, the gateway's FIX acceptor, a FIX client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.client import Credentials
from gateway.core import auth
from gateway.fix.client import FixClient
from gateway.fix.session import sending_time
from tests.support.exchange_harness import RunningExchange, running_exchange
from tests.support.fix_dictionary import CheckedFixClient

FUNDS = {"USD": "1000000", "BTC": "100"}


@pytest.fixture
async def ex(tmp_path: Path) -> AsyncIterator[RunningExchange]:
    async with running_exchange(tmp_path, fix=True) as running:
        yield running


async def fix_client(ex: RunningExchange, creds: Credentials, **kw: object) -> FixClient:
    # Every message received is checked against QuickFIX's FIX 4.4 dictionary.
    client = await CheckedFixClient.connect(
        "127.0.0.1", ex.fix_port, api_key=creds.api_key, secret=creds.secret,
        **kw)  # type: ignore[arg-type]
    return client


def limit(clordid: str, side: str = "1", qty: str = "0.5", price: str = "50000.00",
          **extra: str) -> list[tuple[int, str]]:
    body = [(11, clordid), (55, "BTC-USD"), (54, side), (38, qty), (40, "2"), (44, price),
            (59, "1")]
    return body + [(int(k[1:]), v) for k, v in extra.items()]


async def test_logon_place_status_cancel(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds)
    await client.send("D", limit("c1"))
    new = await client.expect("8")
    assert new.get(150) == "0" and new.get(39) == "0" and new.get(11) == "c1"
    assert new.get(44) == "50000.00" and new.get(38) == "0.5000" and new.get(151) == "0.5000"
    order_id = new.get(37)
    assert order_id and order_id.isdigit()

    await client.send("H", [(37, order_id), (11, "c1"), (55, "BTC-USD"), (54, "1")])
    status = await client.expect("8")
    assert status.get(150) == "I" and status.get(39) == "0" and status.get(37) == order_id

    await client.send("F", [(11, "c2"), (41, "c1"), (55, "BTC-USD"), (54, "1")])
    canceled = await client.expect("8")
    assert canceled.get(150) == "4" and canceled.get(39) == "4" and canceled.get(37) == order_id
    await client.close()


async def test_fix_buyer_trades_with_websocket_seller(ex: RunningExchange) -> None:
    buyer = await ex.new_account(FUNDS)
    seller = await ex.new_account(FUNDS)
    fix = await fix_client(ex, buyer)
    await fix.send("D", limit("b1", qty="0.3"))
    assert (await fix.expect("8")).get(150) == "0"
    ws = await ex.client(seller)
    await ws.place("BTC-USD", "sell", "0.1", "50000.00")
    trade = await fix.expect("8")
    assert trade.get(150) == "F" and trade.get(39) == "1"
    assert trade.get(31) == "50000.00" and trade.get(32) == "0.1000"
    assert trade.get(14) == "0.1000" and trade.get(151) == "0.2000" and trade.get(6) == "50000.00"
    await fix.close()


async def test_replace_reports_new_and_original_clordid(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds)
    await client.send("D", limit("r1", price="49000.00"))
    order_id = (await client.expect("8")).get(37) or ""
    await client.send("G", [(11, "r2"), (41, "r1"), (37, order_id), (55, "BTC-USD"),
                            (54, "1"), (38, "0.2"), (40, "2")])
    replaced = await client.expect("8")
    assert replaced.get(150) == "5" and replaced.get(11) == "r2" and replaced.get(41) == "r1"
    assert replaced.get(38) == "0.2000"
    await client.close()


async def test_unknown_order_cancel_gets_order_cancel_reject(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds)
    await client.send("F", [(11, "x2"), (41, "nope"), (55, "BTC-USD"), (54, "1")])
    reject = await client.expect("9")
    assert reject.get(434) == "1" and reject.get(102) == "1"
    assert (reject.get(58) or "").startswith("3005")
    await client.close()


async def test_another_accounts_order_is_unknown(ex: RunningExchange) -> None:
    alice = await ex.new_account(FUNDS)
    mallory = await ex.new_account(FUNDS)
    a = await fix_client(ex, alice)
    await a.send("D", limit("a1", price="49000.00"))
    order_id = (await a.expect("8")).get(37) or ""
    m = await fix_client(ex, mallory, sender="MALLORY")
    await m.send("F", [(11, "m1"), (37, order_id), (55, "BTC-USD"), (54, "1")])
    assert ((await m.expect("9")).get(58) or "").startswith("3005")
    await a.close()
    await m.close()


async def test_off_grid_price_is_rejected_at_the_edge(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds)
    await client.send("D", limit("bad", price="50000.001"))
    reject = await client.expect("8")
    assert reject.get(150) == "8" and reject.get(39) == "8" and reject.get(37) == "NONE"
    assert (reject.get(58) or "").startswith("1002")
    # The full field list in canonical form; the off-grid price is not echoed.
    assert [(t, reject.get(t)) for t in (40, 59, 38, 44, 14, 151, 6, 31, 32)] == [
        (40, "2"), (59, "1"), (38, "0.5000"), (44, None), (14, "0.0000"), (151, "0.0000"),
        (6, "0.00"), (31, "0.00"), (32, "0.0000")]
    await client.send("D", limit("bad2", qty="0.01", price="50000.001"))
    second = await client.expect("8")
    assert second.get(38) == "0.0100"
    # Every report has its own ExecID, rejects that never reached the engine included.
    assert reject.get(17) != second.get(17)
    assert not (reject.get(17) or "0").isdigit()
    await client.close()


async def test_insufficient_balance_is_an_engine_reject(ex: RunningExchange) -> None:
    creds = await ex.new_account({"USD": "10"})
    client = await fix_client(ex, creds)
    await client.send("D", limit("poor"))
    reject = await client.expect("8")
    assert reject.get(150) == "8" and reject.get(103) == "3"
    await client.close()


async def test_unsupported_message_type_gets_business_reject(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds)
    await client.send("R", [(131, "q1")])
    reject = await client.expect("j")
    assert reject.get(372) == "R" and reject.get(380) == "3"
    await client.close()


async def test_garbled_message_is_ignored(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds)
    garbled = bytearray(client.build("D", limit("g1"), seq=client.next_out))
    garbled[-3] = ord("0") if garbled[-3] != ord("0") else ord("1")
    await client.send_raw(bytes(garbled))
    await client.send("1", [(112, "still-there")])
    answer = await client.expect("0")
    assert answer.get(112) == "still-there"
    await client.close()


async def test_bad_signature_stale_time_and_replay_are_refused(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    bad = await FixClient.connect("127.0.0.1", ex.fix_port, api_key="", secret="",
                                  logon=False)
    answer = await bad.logon(creds.api_key, creds.secret, signature="0" * 64)
    assert answer.msg_type == "5" and answer.get(58) == "logon rejected"
    assert await bad.receive() is None

    stale = await FixClient.connect("127.0.0.1", ex.fix_port, api_key="", secret="",
                                    logon=False)
    old = sending_time(time.time() - 60)
    assert (await stale.logon(creds.api_key, creds.secret, when=old)).msg_type == "5"

    when = sending_time(time.time())
    first = await FixClient.connect("127.0.0.1", ex.fix_port, api_key="", secret="",
                                    logon=False)
    assert (await first.logon(creds.api_key, creds.secret, when=when)).msg_type == "A"
    replay = await FixClient.connect("127.0.0.1", ex.fix_port, api_key="", secret="",
                                     logon=False)
    sig = auth.sign_logon(creds.secret, when, "CLIENT", creds.api_key)
    assert (await replay.logon(creds.api_key, creds.secret, when=when,
                               signature=sig)).msg_type == "5"
    await first.close()


async def test_cancel_on_disconnect_cancels_through_the_matcher(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    client = await fix_client(ex, creds, cancel_on_disconnect="Y")
    await client.send("D", limit("cod1", price="49000.00"))
    await client.expect("8")
    await client.close()
    ws = await ex.client(creds)
    # docs/PROTOCOL.md: the cancels go through the journal at once (1 s allowed here).
    deadline = time.monotonic() + 1.0
    while await ws.open_orders("BTC-USD"):
        assert time.monotonic() < deadline, "orders still open 1 s after the disconnect"
