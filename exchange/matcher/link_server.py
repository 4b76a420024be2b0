# Kept whole: the per-link protocol and the routing tables it feeds change together.
"""The matcher's end of the link: accepts gateways, decodes frames, routes answers back.

One `GatewayLink` per connection (an asyncio Protocol). It handshakes (Hello -> Welcome),
decodes frames and hands Submits and Asks to the `LinkHandler` (the matcher). Outbound frames
are appended to a per-link buffer and written once per event-loop iteration.

Bounds:
- MAX_GATEWAYS links; more are closed at once with a log line.
- When the handler's command queue is full a link stops decoding and pauses reading (TCP
  backpressure); the matcher resumes it when the queue drains.
- A gateway whose write buffer passes MAX_WRITE_BUFFER (it does not read its results) is
  disconnected; market data is skipped for a gateway above MD_SKIP_BUFFER (the market-data
  layer sees the sequence gap and resyncs) and counted in matcher_md_frames_skipped_total.
- A malformed or oversized frame closes that link with a logged reason; nothing else is harmed.

Authentication (exchange.link.auth): each connection is first sent a Challenge; with a link
token configured, a Hello without the right proof closes the link (reason bad_link_token).
A TCP listener refuses to start without a token; a Unix socket is created 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import msgspec
import structlog

from exchange.journal.log import MAX_COMMAND_BYTES
from exchange.link.auth import (
    NONCE_BYTES,
    TOKEN_FILE_ENV,
    LinkTokenError,
    process_link_token,
    proof_ok,
)
from exchange.link.codec import (
    COMMAND_DECODER,
    INBOUND_DECODER,
    FrameError,
    FrameSplitter,
    FrameTooLarge,
    RawSubmit,
    append_frame,
    parse_address,
)
from exchange.link.messages import (
    HEARTBEAT_INTERVAL_S,
    LINK_TIMEOUT_S,
    PROTOCOL_VERSION,
    Answer,
    Ask,
    Challenge,
    Heartbeat,
    Hello,
    Interest,
    MarketData,
    MdSubscribe,
    MdUnsubscribe,
    Refused,
    SessionClosed,
    SessionOpened,
    Welcome,
)
from exchange.matcher.metrics import GATEWAYS, LINKS_CLOSED, MD_SKIPPED
from exchange.model.codes import Code
from exchange.model.commands import Command
from exchange.model.queries import NotFound, Query, QueryResult
from exchange.model.sessions import CancelOnDisconnect

log = structlog.get_logger("exchange.matcher.link_server")

MAX_GATEWAYS = 256
MAX_SESSIONS_PER_LINK = 100_000
MAX_INTEREST_PER_LINK = 1_000_000
MAX_WRITE_BUFFER = 64 * 1024 * 1024
MD_SKIP_BUFFER = 4 * 1024 * 1024

class LinkHandler(Protocol):
    def welcome(self) -> Welcome: ...

    queue: deque[tuple[GatewayLink | None, int, bytes, Command]]

    @property
    def accepting(self) -> bool:
        """False while stopping or failed: submits then take the slow path (refused)."""

    def room(self) -> int:
        """Commands the queue can still take; at 0 links pause reading."""

    def wake(self) -> None:
        """Commands were appended to `queue`."""

    def submit(self, link: GatewayLink, req_id: int, raw: bytes, command: Command) -> None:
        """The slow path: checks everything, refuses or queues."""

    def answer(self, query: Query) -> QueryResult: ...

    def link_lost(self, link: GatewayLink) -> None: ...


class GatewayLink(asyncio.Protocol):
    def __init__(self, server: LinkServer) -> None:
        self.server = server
        self.handler = server.handler
        self.gateway_id = ""
        self.peer = ""
        self.transport: asyncio.Transport | None = None
        self.frames = FrameSplitter()  # received bytes not yet decoded
        self.out = bytearray()
        self._flush_scheduled = False
        self.welcomed = False
        self.closed = False
        self.paused = False
        self.last_rx = time.monotonic()
        self.sessions: dict[str, tuple[int, CancelOnDisconnect]] = {}
        self.accounts: set[int] = set()
        self.md_symbols: set[str] = set()
        self.reports: list[object] = []
        self.md_skipping = False
        self.nonce = b""

    # ---- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but implement it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer) if peer else "unix"
        if len(self.server.links) >= MAX_GATEWAYS:
            log.warning("link_refused", reason=f"more than {MAX_GATEWAYS} links", peer=self.peer)
            LINKS_CLOSED.labels("too_many_links").inc()
            self.closed = True
            transport.abort()
            return
        self.server.links.add(self)
        self.nonce = secrets.token_bytes(NONCE_BYTES)
        self.send(Challenge(nonce=self.nonce))
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.frames.push(data)
        self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = not self.closed
        self.closed = True
        self.server.forget(self)
        if self.welcomed:
            GATEWAYS.dec()
            if was_open:
                log.info("link_down", gateway_id=self.gateway_id, peer=self.peer,
                         reason=repr(exc) if exc else "closed by gateway")
            self.handler.link_lost(self)

    # ---- inbound ------------------------------------------------------------------------------

    def process(self) -> None:
        """Decode buffered frames until none is complete or the command queue is full.

        Frames are decoded straight out of the received bytes (no copy per frame); the ones
        left when the queue fills stay buffered until `resume`.
        """
        if self.closed:
            return
        frames = self.frames
        handler = self.handler
        # Fast path: while the matcher accepts, a Submit goes straight onto its queue; the
        # slow path (handler.submit) refuses with a reason.
        accepting = handler.accepting
        queue_append = handler.queue.append
        room = handler.room()
        added = 0
        pop = frames.pop
        decode_inbound = INBOUND_DECODER.decode
        decode_command = COMMAND_DECODER.decode
        try:
            while not self.closed:
                if room <= 0:
                    if frames.ready():
                        self.pause()
                    break
                frame = pop()
                if frame is None:
                    break
                msg = decode_inbound(frame)
                if type(msg) is RawSubmit and self.welcomed:
                    raw = bytes(msg.command)
                    command = decode_command(raw)  # DecodeError: handled below
                    if accepting and len(raw) <= MAX_COMMAND_BYTES:
                        queue_append((self, msg.req_id, raw, command))
                        added += 1
                        room -= 1
                    else:
                        handler.submit(self, msg.req_id, raw, command)
                else:
                    self._control(msg)
        except (FrameError, msgspec.DecodeError) as exc:
            self.drop("malformed_frame", str(exc))
            self.frames = FrameSplitter()  # what follows a broken frame is never read
        finally:
            if added:
                handler.wake()

    def _control(self, msg: object) -> None:
        if not self.welcomed:
            if not isinstance(msg, Hello):
                raise FrameError(f"expected Hello first, got {type(msg).__name__}")
            if msg.version != PROTOCOL_VERSION:
                self.drop("version_mismatch",
                          f"gateway speaks link version {msg.version}, we speak "
                          f"{PROTOCOL_VERSION}")
                return
            token = self.server.token
            if token is not None and not proof_ok(token, self.nonce, msg.gateway_id, msg.proof):
                self.drop("bad_link_token", "the Hello did not prove the link token")
                return
            self.gateway_id = msg.gateway_id
            self.welcomed = True
            GATEWAYS.inc()
            self.send(self.handler.welcome())
            log.info("link_up", gateway_id=self.gateway_id, peer=self.peer)
            return
        match msg:
            case Ask(req_id=req_id, query=query):
                try:
                    result = self.handler.answer(query)
                except Exception:
                    log.exception("query_failed", gateway_id=self.gateway_id, query=repr(query))
                    result = NotFound(code=Code.INTERNAL)
                self.send(Answer(req_id=req_id, result=result))
            case Heartbeat():
                pass
            case Interest(add=add, remove=remove):
                self.server.set_interest(self, add, remove)
            case SessionOpened(session_id=sid, account_id=account, cancel_on_disconnect=mode):
                if len(self.sessions) >= MAX_SESSIONS_PER_LINK and sid not in self.sessions:
                    raise FrameError(f"more than {MAX_SESSIONS_PER_LINK} sessions on one link")
                self.sessions[sid] = (account, mode)
            case SessionClosed(session_id=sid):
                self.sessions.pop(sid, None)
            case MdSubscribe(symbols=symbols):
                self.server.md_subscribe(self, symbols)
            case MdUnsubscribe(symbols=symbols):
                self.server.md_unsubscribe(self, symbols)
            case Hello():
                raise FrameError("second Hello")
            case _:
                raise FrameError(f"unexpected {type(msg).__name__} from a gateway")

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
            self.server.paused.add(self)

    def resume(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
            self.process()

    # ---- outbound -----------------------------------------------------------------------------

    def send(self, msg: object) -> None:
        if self.closed:
            return
        append_frame(self.out, msg)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.server.loop.call_soon(self.flush)

    def refuse(self, req_id: int, code: int, reason: str) -> None:
        self.send(Refused(req_id=req_id, code=code, reason=reason))

    def flush(self) -> None:
        self._flush_scheduled = False
        transport = self.transport
        if self.closed or transport is None or not self.out:
            return
        out = self.out
        self.out = bytearray()
        transport.write(out)
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.drop("slow_gateway",
                      f"write buffer over {MAX_WRITE_BUFFER} bytes: the gateway does not read")

    def write_buffered(self) -> int:
        transport = self.transport
        return len(self.out) + (transport.get_write_buffer_size() if transport else 0)

    def drop(self, reason: str, detail: str) -> None:
        """Close this link now (abort: unsent frames are discarded) with a logged reason."""
        if self.closed:
            return
        log.warning("link_closed", gateway_id=self.gateway_id, peer=self.peer, reason=reason,
                    detail=detail)
        LINKS_CLOSED.labels(reason).inc()
        self.closed = True
        self.out = bytearray()
        if self.transport is not None:
            self.transport.abort()


class LinkServer:
    def __init__(self, handler: LinkHandler, token: bytes | None = None) -> None:
        """`token`: the link token gateways must prove (default: the process's, if any)."""
        self.handler = handler
        self.token = token if token is not None else process_link_token()
        self.loop = asyncio.get_running_loop()
        self.links: set[GatewayLink] = set()
        self.paused: set[GatewayLink] = set()
        # account id -> links that asked for its order events (Interest)
        self.interest: dict[int, set[GatewayLink]] = {}
        self.md_links: dict[str, set[GatewayLink]] = {}
        self._server: asyncio.Server | None = None
        self._unix_path: Path | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.on_tick: Callable[[], None] | None = None

    async def start(self, address: str) -> None:
        addr = parse_address(address)
        if addr.kind == "unix":
            path = Path(addr.path)
            await _clear_stale_socket(path)
            # Connecting to a Unix socket needs write permission on it: 0600 keeps other
            # local users off the link. The umask covers the moment between bind and chmod.
            old_umask = os.umask(0o177)
            try:
                self._server = await self.loop.create_unix_server(
                    lambda: GatewayLink(self), str(path), backlog=128
                )
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            self._unix_path = path
        else:
            if self.token is None:
                raise LinkTokenError(
                    f"a TCP link ({address}) needs a link token: pass --link-token-file or "
                    f"set {TOKEN_FILE_ENV}")
            self._server = await self.loop.create_server(
                lambda: GatewayLink(self), addr.host, addr.port, backlog=128, reuse_address=True
            )
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    def bound_port(self) -> int:
        """The TCP port actually bound (for tcp:host:0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._unix_path.unlink()
            self._unix_path = None

    def close_links(self, reason: str) -> None:
        """Flush what is queued and close every link."""
        for link in list(self.links):
            link.flush()
            if link.transport is not None and not link.closed:
                log.info("link_closing", gateway_id=link.gateway_id, reason=reason)
                link.transport.close()

    def abort_links(self, reason: str) -> None:
        for link in list(self.links):
            link.drop(reason, "matcher stopping on an error")

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        await self.stop_accepting()

    def forget(self, link: GatewayLink) -> None:
        self.links.discard(link)
        self.paused.discard(link)
        for account in link.accounts:
            targets = self.interest.get(account)
            if targets is not None:
                targets.discard(link)
                if not targets:
                    del self.interest[account]
        for symbol in link.md_symbols:
            subs = self.md_links.get(symbol)
            if subs is not None:
                subs.discard(link)
                if not subs:
                    del self.md_links[symbol]

    def resume_paused(self) -> None:
        paused, self.paused = self.paused, set()
        for link in paused:
            link.resume()

    def set_interest(self, link: GatewayLink, add: list[int], remove: list[int]) -> None:
        for account in remove:
            if account in link.accounts:
                link.accounts.discard(account)
                targets = self.interest.get(account)
                if targets is not None:
                    targets.discard(link)
                    if not targets:
                        del self.interest[account]
        if len(link.accounts) + len(add) > MAX_INTEREST_PER_LINK:
            raise FrameError(f"more than {MAX_INTEREST_PER_LINK} accounts of interest")
        for account in add:
            link.accounts.add(account)
            self.interest.setdefault(account, set()).add(link)

    def md_subscribe(self, link: GatewayLink, symbols: list[str]) -> None:
        for symbol in symbols:
            link.md_symbols.add(symbol)
            self.md_links.setdefault(symbol, set()).add(link)

    def md_unsubscribe(self, link: GatewayLink, symbols: list[str]) -> None:
        for symbol in symbols:
            link.md_symbols.discard(symbol)
            subs = self.md_links.get(symbol)
            if subs is not None:
                subs.discard(link)
                if not subs:
                    del self.md_links[symbol]

    def send_to_gateways(self, symbol: str, payload: bytes) -> None:
        """Market data for `symbol` to every subscribed gateway that keeps up (SendToGateways)."""
        subs = self.md_links.get(symbol)
        if not subs:
            return
        msg: MarketData | None = None
        for link in subs:
            if link.write_buffered() > MD_SKIP_BUFFER:
                MD_SKIPPED.inc()
                if not link.md_skipping:
                    link.md_skipping = True
                    log.warning("md_skipping", gateway_id=link.gateway_id,
                                buffered=link.write_buffered(), bound=MD_SKIP_BUFFER)
                continue
            if link.md_skipping:
                link.md_skipping = False
                log.info("md_resumed", gateway_id=link.gateway_id)
            if msg is None:
                msg = MarketData(symbol=symbol, payload=payload)
            try:
                link.send(msg)
            except FrameTooLarge:
                log.error("md_frame_too_large", symbol=symbol, size=len(payload))
                return

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            now = time.monotonic()
            beat = Heartbeat(ts=time.time_ns())
            for link in list(self.links):
                # A link we paused ourselves (full queue) is not silent by its own doing.
                if not link.paused and now - link.last_rx > LINK_TIMEOUT_S:
                    link.drop("heartbeat_timeout", f"no frame for {LINK_TIMEOUT_S} s")
                elif link.welcomed:
                    link.send(beat)
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception:
                    log.exception("tick_failed")


async def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead matcher; refuse if a live one answers on it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        os.unlink(path)  # a metadata-only call on a socket file: does not block for long
        return
    writer.close()
    raise OSError(f"another process is listening on {path}")
