"""The matcher's end of the link, alone: a full command queue stops decoding part-way through
the received bytes, pauses reading, and resuming decodes the rest in order."""

from __future__ import annotations

from collections import deque
from typing import Any

from exchange.link.codec import encode_frame
from exchange.link.messages import PROTOCOL_VERSION, Hello, Submit, Welcome
from exchange.matcher.link_server import GatewayLink, LinkServer
from exchange.model.codes import Code
from exchange.model.commands import Command, CreateAccount
from exchange.model.instruments import load_config
from exchange.model.queries import NotFound, Query, QueryResult


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True
        self.written = bytearray()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return None

    def abort(self) -> None:
        self.reading = False


class BoundedQueue:
    """A LinkHandler whose queue takes `limit` commands."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queue: deque[tuple[GatewayLink | None, int, bytes, Command]] = deque()
        self.refused: list[int] = []

    def welcome(self) -> Welcome:
        return Welcome(matcher_id="m", version=PROTOCOL_VERSION, config=load_config(),
                       symbols=[], last_seq=0)

    @property
    def accepting(self) -> bool:
        return True

    def room(self) -> int:
        return self.limit - len(self.queue)

    def wake(self) -> None:
        pass

    def submit(self, link: GatewayLink, req_id: int, raw: bytes, command: Command) -> None:
        self.refused.append(req_id)

    def answer(self, query: Query) -> QueryResult:
        return NotFound(code=Code.UNKNOWN_ORDER)

    def link_lost(self, link: GatewayLink) -> None:
        pass


def submits(first: int, count: int) -> bytes:
    return b"".join(encode_frame(Submit(req_id=first + i, command=CreateAccount()))
                    for i in range(count))


async def test_full_queue_stops_decoding_midway_and_resume_goes_on_in_order() -> None:
    handler = BoundedQueue(limit=3)
    server = LinkServer(handler)
    link = GatewayLink(server)
    transport = FakeTransport()
    link.connection_made(transport)  # type: ignore[arg-type]
    link.data_received(encode_frame(Hello(gateway_id="gw")) + submits(1, 5))
    assert link.welcomed and link.out  # the Welcome is on its way
    # Three fit; the fourth is complete but the queue is full: reading pauses, two stay buffered.
    assert [req for _, req, _, _ in handler.queue] == [1, 2, 3]
    assert link.paused and not transport.reading and link in server.paused
    handler.queue.clear()
    server.resume_paused()
    assert [req for _, req, _, _ in handler.queue] == [4, 5]
    assert not link.paused and transport.reading and not handler.refused


async def test_full_queue_with_only_a_partial_frame_keeps_reading() -> None:
    handler = BoundedQueue(limit=1)
    server = LinkServer(handler)
    link = GatewayLink(server)
    transport = FakeTransport()
    link.connection_made(transport)  # type: ignore[arg-type]
    rest = submits(2, 1)
    link.data_received(encode_frame(Hello(gateway_id="gw")) + submits(1, 1) + rest[:3])
    assert [req for _, req, _, _ in handler.queue] == [1]
    assert not link.paused  # nothing complete is waiting: no reason to stop reading yet
    link.data_received(rest[3:])
    assert link.paused and [req for _, req, _, _ in handler.queue] == [1]
    handler.queue.clear()
    server.resume_paused()
    assert [req for _, req, _, _ in handler.queue] == [2]
