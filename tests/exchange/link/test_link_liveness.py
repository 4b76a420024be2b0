"""Heartbeat timeouts, market-data routing and its skip-when-slow bound."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from exchange.link import client as link_client
from exchange.link.client import LinkClient
from exchange.link.codec import encode_frame, parse_address
from exchange.link.messages import Hello, MdSubscribe, Result, SessionOpened
from exchange.matcher import link_server
from exchange.matcher.metrics import MD_SKIPPED
from exchange.model.commands import CreateAccount, PlaceOrder
from exchange.model.queries import GetOrder, OrderState
from tests.support.matcher_harness import inprocess_matcher, wait_until


async def test_silent_link_times_out_and_cancels_its_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_server, "LINK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(link_server, "HEARTBEAT_INTERVAL_S", 0.1)
    monkeypatch.setattr(link_client, "HEARTBEAT_INTERVAL_S", 0.1)  # the live client beats
    async with inprocess_matcher(tmp_path / "d") as (matcher, address):
        admin = await LinkClient.connect(address, "admin")
        await admin.submit(CreateAccount())
        # A gateway that handshakes, opens a session, places an order, then goes silent.
        _, writer = await asyncio.open_unix_connection(parse_address(address).path)
        writer.write(encode_frame(Hello(gateway_id="gw-silent")))
        writer.write(encode_frame(SessionOpened(session_id="s", account_id=1,
                                                cancel_on_disconnect="account")))
        await writer.drain()
        placed = await admin.submit(PlaceOrder(
            account_id=1, symbol="BTC-USD", side="buy", order_type="limit", qty=1,
            price=5_000_000, client_order_id="a", session_id="s"))
        assert isinstance(placed, Result)
        await wait_until(lambda: matcher.server is not None and not any(
            link.gateway_id == "gw-silent" for link in matcher.server.links), 5)
        await wait_until(lambda: matcher.engine.last_seq == 3, 5)
        state = await admin.ask(GetOrder(account_id=1, symbol="BTC-USD",
                                         order_id=placed.events[0].order_id))  # type: ignore[union-attr]
        assert isinstance(state, OrderState) and state.status == "canceled"
        writer.close()
        await admin.close()


async def test_market_data_to_subscribers_and_skip_when_slow(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "d") as (matcher, address):
        got: list[tuple[str, bytes]] = []
        sub = await LinkClient.connect(address, "gw-md",
                                       on_market_data=lambda s, p: got.append((s, p)))
        sub.md_subscribe(["BTC-USD"])
        await sub.ask(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))  # ordering
        server = matcher.server
        assert server is not None
        server.send_to_gateways("BTC-USD", b"payload-1")
        server.send_to_gateways("ETH-USD", b"not subscribed")
        await wait_until(lambda: len(got) == 1)
        assert got == [("BTC-USD", b"payload-1")]
        # A gateway that subscribes and never reads: frames are skipped once its unsent
        # output passes the bound, and the matcher's memory does not grow with it.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(parse_address(address).path)
        sock.sendall(encode_frame(Hello(gateway_id="gw-stuck"))
                     + encode_frame(MdSubscribe(symbols=["BTC-USD"])))
        await wait_until(lambda: len(server.md_links.get("BTC-USD", ())) == 2)
        before = MD_SKIPPED._value.get()
        big = b"x" * 65536
        for _ in range(200):  # 13 MB offered to a reader that takes nothing
            server.send_to_gateways("BTC-USD", big)
            await asyncio.sleep(0)
        stuck = next(link for link in server.links if link.gateway_id == "gw-stuck")
        assert MD_SKIPPED._value.get() > before
        assert stuck.write_buffered() < link_server.MD_SKIP_BUFFER + 2 * 65536 + 1024
        await wait_until(lambda: len(got) == 201, 10)  # the reading gateway got every frame
        sock.close()
        await sub.close()
