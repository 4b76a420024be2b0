"""A small FIX 4.4 initiator for tests, examples and operators' smoke checks.

    client = await FixClient.connect("127.0.0.1", port, api_key=key, secret=secret)
    await client.send("D", [(11, "c1"), (55, "BTC-USD"), (54, "1"), (38, "0.5"), (40, "2"),
                            (44, "50000.00"), (59, "1")])
    report = await client.expect("8")
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.core import auth
from gateway.fix.codec import FixMessage, FixStreamParser, encode
from gateway.fix.session import sending_time


class FixClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 sender: str, target: str) -> None:
        self.reader = reader
        self.writer = writer
        self.sender = sender
        self.target = target
        self.next_out = 1
        self.parser = FixStreamParser()
        self.inbox: list[FixMessage] = []

    @classmethod
    async def connect(cls, host: str, port: int, *, api_key: str, secret: str,
                      sender: str = "CLIENT", target: str = "EXCH", heartbeat_s: int = 30,
                      cancel_on_disconnect: str = "N", reset: bool = True,
                      logon: bool = True) -> FixClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer, sender, target)
        if logon:
            await client.logon(api_key, secret, heartbeat_s=heartbeat_s,
                               cancel_on_disconnect=cancel_on_disconnect, reset=reset)
        return client

    def build(self, msg_type: str, body: list[tuple[int, str]], *, seq: int | None = None,
              when: str | None = None) -> bytes:
        header = [(49, self.sender), (56, self.target),
                  (34, str(self.next_out if seq is None else seq)),
                  (52, when or sending_time(time.time()))]
        if seq is None:
            self.next_out += 1
        return encode(msg_type, header, body)

    async def send(self, msg_type: str, body: list[tuple[int, str]], **kw: object) -> None:
        self.writer.write(self.build(msg_type, body, **kw))  # type: ignore[arg-type]
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def logon(self, api_key: str, secret: str, *, heartbeat_s: int = 30,
                    cancel_on_disconnect: str = "N", reset: bool = True,
                    when: str | None = None, signature: str | None = None) -> FixMessage:
        sent_at = when or sending_time(time.time())
        sig = signature or auth.sign_logon(secret, sent_at, self.sender, api_key)
        body = [(98, "0"), (108, str(heartbeat_s)), (553, api_key), (95, str(len(sig))),
                (96, sig), (8013, cancel_on_disconnect)]
        if reset:
            body.append((141, "Y"))
        await self.send("A", body, when=sent_at)
        return await self.expect("A", "5")

    async def receive(self, wait_s: float = 5.0) -> FixMessage | None:
        """The next message, or None when the server closed the connection."""
        async with asyncio.timeout(wait_s):
            while not self.inbox:
                data = await self.reader.read(65_536)
                if not data:
                    return None
                self.inbox.extend(self.parser.feed(data))
        return self.inbox.pop(0)

    async def expect(self, *msg_types: str, wait_s: float = 5.0) -> FixMessage:
        """The next message of one of `msg_types`, skipping heartbeats."""
        while True:
            msg = await self.receive(wait_s)
            if msg is None:
                raise ConnectionError("FIX connection closed")
            if msg.msg_type in msg_types:
                return msg
            if msg.msg_type != "0":
                raise AssertionError(f"expected {msg_types}, got {msg.fields}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
