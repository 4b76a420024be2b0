"""The market-data probe on the lean client: books checked, server hang-ups reported."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from loadtest import checks, recorder
from loadtest.book import checksum
from loadtest.checks import Violations
from loadtest.md_probe import BookChecker, run_probe

BIDS = [["99.50", "1.0"], ["99.00", "2.5"]]
ASKS = [["100.50", "0.5"]]


def book_message(kind: str, seq: int, prev: int | None, bids: list[list[str]],
                 asks: list[list[str]], crc: int) -> str:
    return json.dumps({"channel": "book", "type": kind, "symbol": "BTC-USD",
                       "ts": time.time_ns(), "seq": seq, "prev_seq": prev, "bids": bids,
                       "asks": asks, "checksum": crc})


def make_app(hang_up: bool) -> web.Application:
    async def md(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            crc = checksum([("100.50", "0.5")], [("99.50", "1.0"), ("99.00", "2.5")])
            await ws.send_str(book_message("snapshot", 10, None, BIDS, ASKS, crc))
            if req["method"] == "resync":
                continue
            # A bad checksum: the probe reports it and asks for a resync (answered above).
            await ws.send_str(book_message("update", 11, 10, [["99.00", "0"]], [], 1))
            await ws.send_str(book_message("update", 12, 11, [["99.00", "0"]], [],
                                           checksum([("100.50", "0.5")], [("99.50", "1.0")])))
            if hang_up:
                await ws.close(code=WSCloseCode.INTERNAL_ERROR)
        return ws

    app = web.Application()
    app.router.add_get("/ws/md", md)
    return app


@pytest.fixture(params=[False, True], ids=["stays", "hangs-up"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, bool]]:
    runner = web.AppRunner(make_app(request.param))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", request.param
    finally:
        await runner.cleanup()


@pytest.mark.timeout(30)
async def test_probe_checks_books_and_reports_a_server_hang_up(
    server: tuple[str, bool],
) -> None:
    url, hang_up = server
    v = Violations()
    checker = BookChecker("p", v)
    rec = recorder.Recorder(0)
    # Hanging up must end the probe long before its deadline, however loaded the machine is;
    # a server that stays is read until the (short) deadline.
    run_ns = 20_000_000_000 if hang_up else 500_000_000
    t0 = time.monotonic_ns()
    await run_probe(url, ["BTC-USD"], rec, checker, t0 + run_ns)
    elapsed = time.monotonic_ns() - t0
    assert v.counts.get(checks.BOOK_CHECKSUM) == 1
    # The snapshot, and (unless the server hung up first) the snapshot after the resync.
    assert checker.checksums_ok >= (1 if hang_up else 2)
    assert rec.hist(recorder.MD).get_total_count() >= 1  # updates only, not snapshots
    if hang_up:
        assert v.counts.get(checks.MD_CLOSED) == 1
        assert "close code 1011" in v.examples[checks.MD_CLOSED][0]
        assert elapsed < run_ns // 2  # returned when the server hung up
    else:
        assert checks.MD_CLOSED not in v.counts
        assert elapsed >= run_ns  # read until the deadline
