"""MatcherLink against a scripted stand-in for LinkClient: the window, the queue and the cancel
lane, failures at a link break, and what is announced again after a reconnect."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from exchange.link.client import LinkClient, LinkDown
from exchange.link.messages import Result, Welcome
from exchange.model.commands import CancelOrder, PlaceOrder
from exchange.model.instruments import load_config
from exchange.model.queries import GetBalances, QueryResult
from gateway.core.matcher_link import LinkLimits, MatcherLink, Overloaded, Unavailable
from tests.support.exchange_harness import wait_until

CONFIG = load_config()


class FakeClient:
    """Records what the link sends; the test answers submits by hand."""

    def __init__(self) -> None:
        self.welcome = Welcome(matcher_id="m", version=1, config=CONFIG,
                               symbols=list(CONFIG.instruments), last_seq=0)
        self.closed = False
        self.submits: list[tuple[Any, asyncio.Future[Any]]] = []
        self.callbacks: list[Any] = []
        self.polls = 0
        self.on_poll: Any = None  # what poll() finds already sent by the matcher
        self.notices: list[tuple[str, Any]] = []
        self._closed = asyncio.Event()

    def submit_nowait(self, command: Any) -> asyncio.Future[Any]:
        if self.closed:
            raise LinkDown("closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.submits.append((command, fut))
        return fut

    def submit_callback(self, command: Any, callback: Any) -> None:
        """As LinkClient: `callback` gets the Result/Refused, or LinkDown."""
        fut = self.submit_nowait(command)
        self.callbacks.append(callback)
        fut.add_done_callback(
            lambda f: callback(f.exception() if f.exception() is not None else f.result()))

    def ask_nowait(self, query: Any) -> asyncio.Future[QueryResult]:
        return asyncio.get_running_loop().create_future()

    def poll(self) -> None:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll()

    def interest(self, add: Any = (), remove: Any = ()) -> None:
        self.notices.append(("interest", (list(add), list(remove))))

    def session_opened(self, sid: str, account: int, mode: str) -> None:
        self.notices.append(("session_opened", (sid, account, mode)))

    def session_closed(self, sid: str) -> None:
        self.notices.append(("session_closed", sid))

    def md_subscribe(self, symbols: Any) -> None:
        self.notices.append(("md_subscribe", list(symbols)))

    def md_unsubscribe(self, symbols: Any) -> None:
        self.notices.append(("md_unsubscribe", list(symbols)))

    def drop(self) -> None:
        self.closed = True
        for _, fut in self.submits:
            if not fut.done():
                fut.set_exception(LinkDown("lost"))
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self.drop()


class Connector:
    def __init__(self) -> None:
        self.clients: list[FakeClient] = []
        self.fail = 0

    async def __call__(self, address: str, gateway_id: str, **kwargs: Any) -> LinkClient:
        if self.fail:
            self.fail -= 1
            raise LinkDown("refused")
        client = FakeClient()
        self.clients.append(client)
        return cast(LinkClient, client)


def place(i: int) -> PlaceOrder:
    return PlaceOrder(account_id=1, symbol="BTC-USD", side="buy", order_type="limit", qty=1,
                      price=100, client_order_id=f"c{i}")


CANCEL = CancelOrder(account_id=1, symbol="BTC-USD", order_id=1)


async def started(limits: LinkLimits, connector: Connector) -> MatcherLink:
    link = MatcherLink("unix:/nowhere", "gw", limits=limits, connector=connector)
    link.start()
    async with asyncio.timeout(5):
        await link.wait_up()
    return link


async def test_window_queue_and_cancel_lane() -> None:
    connector = Connector()
    link = await started(LinkLimits(window=2, queue_size=2, cancel_reserve=1,
                                    cancel_queue_size=2), connector)
    client = connector.clients[0]
    tickets = [link.submit(place(i)) for i in range(4)]
    assert (link.in_flight, link.queued, len(client.submits)) == (2, 2, 2)
    with pytest.raises(Overloaded) as info:
        link.submit(place(9))
    assert info.value.retry_after_ms > 0
    cancels = [link.submit(CANCEL, cancel=True) for _ in range(3)]  # 1 reserve + 2 queued
    assert link.in_flight == 3 and len(client.submits) == 3
    with pytest.raises(Overloaded):
        link.submit(CANCEL, cancel=True)  # only once its own lane is full too
    # A freed slot goes to a waiting cancel before any waiting new order.
    client.submits[0][1].set_result(Result(req_id=1, seq=1, events=[]))
    await wait_until(lambda: tickets[0].done(), 2)
    assert isinstance(client.submits[3][0], CancelOrder)
    async with asyncio.timeout(2):
        while not all(t.done() for t in [*tickets, *cancels]):
            for _, fut in list(client.submits):
                if not fut.done():
                    fut.set_result(Result(req_id=0, seq=2, events=[]))
            await asyncio.sleep(0)  # let the done-callbacks refill the window
    kinds = [type(c).__name__ for c, _ in client.submits]
    assert kinds == ["PlaceOrder"] * 2 + ["CancelOrder"] * 3 + ["PlaceOrder"] * 2
    assert (link.in_flight, link.queued) == (0, 0)
    await link.stop()


async def test_answers_waiting_in_the_socket_are_taken_before_refusing() -> None:
    connector = Connector()
    link = await started(LinkLimits(window=2, queue_size=1), connector)
    client = connector.clients[0]
    done: list[Any] = []
    for i in range(3):
        link.submit_to(place(i), done.append)
    assert (link.in_flight, link.queued, client.polls) == (2, 1, 0)
    # The answer to c0 has arrived but the event loop has not read it yet: poll() finds it.
    client.on_poll = lambda: client.callbacks[0](Result(req_id=1, seq=1, events=[]))
    link.submit_to(place(3), done.append)  # accepted, where it used to be refused
    assert client.polls == 1
    assert [type(d) for d in done] == [Result]
    assert [c.client_order_id for c, _ in client.submits] == ["c0", "c1", "c2"]
    assert (link.in_flight, link.queued) == (2, 1)
    client.on_poll = None
    with pytest.raises(Overloaded):
        link.submit_to(place(4), done.append)  # nothing waiting: refused, after looking
    assert client.polls == 2
    await link.stop()


async def test_break_fails_in_flight_with_linkdown_and_queued_as_unavailable() -> None:
    connector = Connector()
    link = await started(LinkLimits(window=1, queue_size=4, backoff_min_s=0.01), connector)
    sent, queued = link.submit(place(1)), link.submit(place(2))
    link.add_account(7)
    link.session_opened("s1", 7, "session")
    link.session_opened("s2", 7, "none")
    link.session_closed("s2")
    link.md_subscribe(["BTC-USD"])
    connector.fail = 2
    connector.clients[0].drop()
    with pytest.raises(LinkDown):
        await sent
    with pytest.raises(Unavailable):
        await queued
    with pytest.raises(Unavailable):
        link.submit(place(3))
    with pytest.raises(Unavailable):
        link.ask_nowait(GetBalances(account_id=7))
    async with asyncio.timeout(5):
        await link.wait_up()
    assert len(connector.clients) == 2  # after two refused attempts
    assert connector.clients[1].notices == [
        ("interest", ([7], [])),
        ("session_opened", ("s1", 7, "session")),
        ("md_subscribe", ["BTC-USD"]),
    ]
    await link.stop()


async def test_interest_is_reference_counted() -> None:
    connector = Connector()
    link = await started(LinkLimits(), connector)
    link.add_account(3)
    link.add_account(3)
    link.remove_account(3)
    link.remove_account(3)
    assert connector.clients[0].notices == [("interest", ([3], [])), ("interest", ([], [3]))]
    await link.stop()
