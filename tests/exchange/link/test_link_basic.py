"""The link end to end in one process: handshake, submit/result, ask/answer, reports routing,
heartbeats, malformed frames, version mismatch, backpressure, cancel-on-disconnect."""

from __future__ import annotations

import asyncio
import select
import struct
import time
from pathlib import Path

import pytest

from exchange.link.client import LinkClient, LinkDown
from exchange.link.codec import decode_message, encode_frame, parse_address
from exchange.link.messages import PROTOCOL_VERSION, Challenge, Hello, Refused, Result
from exchange.matcher.loop import MatcherOptions
from exchange.model.commands import CreateAccount, PlaceOrder
from exchange.model.events import AccountCreated, OrderAccepted, OrderCanceled, OrderEvent
from exchange.model.queries import GetApiKey, GetOrder, NotFound, OrderState
from tests.support.matcher_harness import MatcherProcess, inprocess_matcher, wait_until


def place(account: int, cid: str, session: str = "") -> PlaceOrder:
    return PlaceOrder(account_id=account, symbol="BTC-USD", side="buy", order_type="limit",
                      qty=1, price=5_000_000, client_order_id=cid, session_id=session)


async def test_handshake_submit_and_ask(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (_, address):
        client = await LinkClient.connect(address, "gw-1")
        assert client.welcome.version == PROTOCOL_VERSION
        assert "BTC-USD" in client.welcome.symbols
        assert client.welcome.last_seq == 0
        result = await client.submit(CreateAccount(label="alice"))
        assert isinstance(result, Result) and result.seq == 1
        assert isinstance(result.events[0], AccountCreated)
        futures = [client.submit_nowait(place(1, f"c{i}")) for i in range(500)]
        results = await asyncio.gather(*futures)
        seqs = [r.seq for r in results if isinstance(r, Result)]
        assert seqs == list(range(2, 502))
        first = results[0]
        assert isinstance(first, Result) and isinstance(first.events[0], OrderAccepted)
        oid = first.events[0].order_id
        answer = await client.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=oid))
        assert isinstance(answer, OrderState) and answer.client_order_id == "c0"
        missing = await client.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=10**9))
        assert isinstance(missing, NotFound)
        await client.close()
        with pytest.raises(LinkDown):
            client.submit_nowait(place(1, "late"))


async def test_reports_go_to_interested_other_gateway(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (_, address):
        got: list[OrderEvent] = []
        arrived = asyncio.Event()

        def on_reports(events: list[OrderEvent]) -> None:
            got.extend(events)
            arrived.set()

        watcher = await LinkClient.connect(address, "gw-watch", on_reports=on_reports)
        trader = await LinkClient.connect(address, "gw-trade")
        watcher.interest(add=[1])
        await watcher.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))  # ordering
        await trader.submit(CreateAccount())
        res = await trader.submit(place(1, "x"))
        assert isinstance(res, Result)
        await asyncio.wait_for(arrived.wait(), 5)
        assert [e.client_order_id for e in got] == ["x"]
        # The submitter gets its events in the Result only, never also as Reports.
        trader_reports: list[OrderEvent] = []
        trader.on_reports = trader_reports.extend
        trader.interest(add=[1])
        await trader.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
        await trader.submit(place(1, "y"))
        await watcher.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
        assert trader_reports == []
        await watcher.close()
        await trader.close()


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One frame body off a raw link connection."""
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


async def _raw_link(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare connection past the matcher's Challenge (the first frame on every link)."""
    addr = parse_address(address)
    reader, writer = await asyncio.open_unix_connection(addr.path)
    challenge = decode_message(await read_frame(reader))
    assert isinstance(challenge, Challenge) and len(challenge.nonce) == 32
    return reader, writer


async def test_malformed_frame_closes_only_that_link(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (_, address):
        good = await LinkClient.connect(address, "gw-good")
        reader, writer = await _raw_link(address)
        writer.write(encode_frame(Hello(gateway_id="gw-bad")))
        writer.write(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")  # not msgpack
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)  # the matcher closes it: read hits EOF
        writer.close()
        # Oversized frame announced: closed at once, without reading the body.
        reader, writer = await _raw_link(address)
        writer.write(struct.pack(">I", 64 * 1024 * 1024))
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        result = await good.submit(CreateAccount())
        assert isinstance(result, Result)
        await good.close()


async def test_version_mismatch_refused(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (_, address):
        reader, writer = await _raw_link(address)
        writer.write(encode_frame(Hello(gateway_id="gw-old", version=PROTOCOL_VERSION + 1)))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_submit_before_hello_closes(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (matcher, address):
        reader, writer = await _raw_link(address)
        from exchange.link.messages import Submit

        writer.write(encode_frame(Submit(req_id=1, command=CreateAccount())))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert matcher.engine.last_seq == 0


async def test_link_down_fails_pending(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (matcher, address):
        client = await LinkClient.connect(address, "gw-1")
        await client.submit(CreateAccount())
        closed: list[BaseException | None] = []
        client.on_closed = closed.append
        futures = [client.submit_nowait(place(1, f"c{i}")) for i in range(100)]
        assert matcher.server is not None
        for link in list(matcher.server.links):
            link.drop("test", "dropped by the test")
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(o, Result | LinkDown) for o in outcomes)
        assert any(isinstance(o, LinkDown) for o in outcomes) or len(closed) == 1
        await client.wait_closed()
        assert closed and client.closed


async def test_backpressure_small_queue(tmp_path: Path) -> None:
    options = MatcherOptions(max_queue=8, max_batch=4)
    async with inprocess_matcher(tmp_path / "data", options=options) as (matcher, address):
        client = await LinkClient.connect(address, "gw-1")
        await client.submit(CreateAccount())
        results = await asyncio.gather(*(client.submit_nowait(place(1, f"c{i}"))
                                         for i in range(2000)))
        assert [r.seq for r in results if isinstance(r, Result)] == list(range(2, 2002))
        assert matcher.engine.last_seq == 2001
        await client.close()


async def test_cancel_on_disconnect(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (matcher, address):
        admin = await LinkClient.connect(address, "gw-admin")
        await admin.submit(CreateAccount())
        await admin.submit(CreateAccount())
        gw = await LinkClient.connect(address, "gw-1")
        gw.session_opened("s1", 1, "session")
        gw.session_opened("s2", 2, "none")
        r1 = await gw.submit(place(1, "a", session="s1"))
        r2 = await gw.submit(place(2, "b", session="s2"))
        assert isinstance(r1, Result) and isinstance(r2, Result)
        seen: list[OrderEvent] = []
        admin.on_reports = seen.extend
        admin.interest(add=[1, 2])
        await admin.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
        last = matcher.engine.last_seq
        await gw.close()
        await wait_until(lambda: matcher.engine.last_seq > last)
        o1 = await admin.ask(GetOrder(account_id=1, symbol="BTC-USD",
                                      order_id=r1.events[0].order_id))  # type: ignore[union-attr]
        o2 = await admin.ask(GetOrder(account_id=2, symbol="BTC-USD",
                                      order_id=r2.events[0].order_id))  # type: ignore[union-attr]
        assert isinstance(o1, OrderState) and o1.status == "canceled"
        assert isinstance(o2, OrderState) and o2.status == "new"
        await wait_until(lambda: bool(seen))
        assert isinstance(seen[0], OrderCanceled) and seen[0].reason == "disconnect"
        await admin.close()


async def test_refused_when_stopping(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (matcher, address):
        client = await LinkClient.connect(address, "gw-1")
        matcher.stop()
        try:
            outcome = await client.submit(CreateAccount())
        except LinkDown:
            pass  # the link may close first; either way nothing was sequenced
        else:
            assert isinstance(outcome, Refused) and outcome.code == 4002
        assert matcher.engine.last_seq == 0


async def test_big_frames_in_pieces_and_oversized_commands(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (matcher, address):
        client = await LinkClient.connect(address, "gw-1")
        # A 200 KB frame arrives in many reads: collected and decoded once.
        answer = await client.ask(GetApiKey(api_key="k" * 200_000))
        assert isinstance(answer, NotFound)
        # A command too big for one journal record is refused, never sequenced.
        outcome = await client.submit(CreateAccount(label="x" * 100_000))
        assert isinstance(outcome, Refused) and outcome.code == 1004
        result = await client.submit(CreateAccount(label="ok"))
        assert isinstance(result, Result) and result.seq == 1
        assert matcher.engine.last_seq == 1
        await client.close()


async def test_submit_callback(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "data") as (matcher, address):
        client = await LinkClient.connect(address, "gw-1")
        outcomes: list[object] = []
        for i in range(50):
            client.submit_callback(CreateAccount(label=str(i)), outcomes.append)
        await wait_until(lambda: len(outcomes) == 50)
        assert [o.seq for o in outcomes if isinstance(o, Result)] == list(range(1, 51))
        # On link loss every pending callback hears LinkDown exactly once.
        for i in range(50):
            client.submit_callback(CreateAccount(label=str(i)), outcomes.append)
        assert matcher.server is not None
        for link in list(matcher.server.links):
            link.drop("test", "dropped by the test")
        await client.wait_closed()
        tail = outcomes[50:]
        assert len(tail) == 50
        assert all(isinstance(o, Result | LinkDown) for o in tail)
        with pytest.raises(LinkDown):
            client.submit_callback(CreateAccount(), outcomes.append)


async def test_result_too_big_for_a_frame_is_split(tmp_path: Path) -> None:
    from exchange.model.commands import CancelAll
    from exchange.model.events import AllCanceled

    async with inprocess_matcher(tmp_path / "data") as (_, address):
        got: list[OrderEvent] = []
        client = await LinkClient.connect(address, "gw-1", on_reports=got.extend)
        await client.submit(CreateAccount())
        n = 45_000  # ~45k OrderCanceled events: more than one 8 MiB frame can hold
        outcomes: list[object] = []
        for i in range(n):
            client.submit_callback(place(1, f"c{i}"), outcomes.append)
        await wait_until(lambda: len(outcomes) == n, 60)
        result = await client.submit(CancelAll(account_id=1))
        assert isinstance(result, Result)
        assert [type(e) for e in result.events] == [AllCanceled]
        assert result.events[0].count == n  # type: ignore[union-attr]
        assert len(got) == n and all(isinstance(e, OrderCanceled) for e in got)
        await client.close()


async def test_poll_writes_now_and_handles_answers_the_loop_has_not_read(tmp_path: Path) -> None:
    # The matcher runs in its own process, so this test can hold the event loop while it
    # answers: only poll() can then send the command and read the Result.
    async with MatcherProcess.started(tmp_path / "d") as proc:
        client = await LinkClient.connect(proc.address, "gw-poll")
        got: list[object] = []
        client.submit_callback(CreateAccount(label="polled"), got.append)
        client.poll()  # sent now, not at the end of this loop turn
        # Only poll() reads here: the loop never runs until the Result is in. Bytes on the
        # socket may be a heartbeat before the Result, so wait and poll until it comes.
        deadline = time.monotonic() + 10.0
        while not got:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the matcher did not answer"
            select.select([client._fd], [], [], remaining)
            client.poll()
        assert len(got) == 1
        result = got[0]
        assert isinstance(result, Result) and isinstance(result.events[0], AccountCreated)
        # What poll() took is not handed over again when the loop reads the socket.
        assert isinstance(await client.submit(CreateAccount(label="after")), Result)
        assert len(got) == 1
        await client.close()
