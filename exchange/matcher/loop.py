"""The matcher: single writer of books and balances, group-committing a journal.

Data flow (docs/MATCHER.md):
  links --Submit--> bounded queue --batch--> stamp seq, ts --> journal write + fsync (thread)
        --> engine.apply in order --> Result to the submitter, Reports to interested gateways,
        market data to the port.
While batch N is being fsynced in the journal thread, batch N+1 accumulates; when N is durable
the next batch is handed to the thread at once and N is applied and answered meanwhile. A small
batch taken when the loop was idle is fsynced on the loop instead (low load: no thread hop).
Nothing leaves the process for a command before its batch is on disk.

Asks are answered from memory at once: the engine holds only applied, hence durable, state.

A failed journal write or fsync is fatal: nothing more is acknowledged, queued commands get
Refused, links with commands in the failed batch are dropped (the gateway answers "outcome
unknown"), and `run` returns a non-zero code. The fsync is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from exchange.journal.log import MAX_COMMAND_BYTES, Journal, encode_batch
from exchange.journal.snapshots import SnapshotStore
from exchange.link.codec import FrameTooLarge, append_frame, encode_command
from exchange.link.messages import (
    PROTOCOL_VERSION,
    Instruments,
    KeyLimitsChanged,
    KeyRevoked,
    Reports,
    Result,
    Welcome,
)
from exchange.marketdata.port import MarketDataPort, NullMarketData
from exchange.matcher.engine_port import EngineLike
from exchange.matcher.link_server import GatewayLink, LinkServer
from exchange.matcher.metrics import BATCHES, QUEUE_FULL, REFUSED
from exchange.matcher.snapshotting import Snapshotter
from exchange.model.codes import Code
from exchange.model.commands import CancelAll, Command, RevokeApiKey, SetKeyLimits
from exchange.model.events import ORDER_EVENTS, ApiKeyRevoked, Event, KeyLimitsSet
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import BookSnapshot, Query, QueryResult
from exchange.model.sessions import CancelOnDisconnect

log = structlog.get_logger("exchange.matcher.loop")

_ORDER_EVENT_TYPES = frozenset(ORDER_EVENTS)
REPORTS_PER_FRAME = 4096  # keeps a Reports frame far below MAX_FRAME_BYTES

# A queued command: (link or None for the matcher's own, req_id, raw msgpack, decoded).
Pending = tuple[GatewayLink | None, int, bytes, Command]


# Batches up to this size are fsynced on the loop when no other command is queued.
INLINE_FSYNC_MAX_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class MatcherOptions:
    matcher_id: str = "matcher-1"
    max_batch: int = 2048
    max_queue: int = 16384
    snapshot_every: int = 1_000_000  # commands
    snapshot_interval_s: float = 300.0
    snapshot_fork: bool = True  # serialize in a forked child (stall = the fork only)
    prune_journal: bool = True
    snapshot_on_stop: bool = True


class Matcher:
    def __init__(
        self,
        *,
        config: ExchangeConfig,
        engine: EngineLike,
        journal: Journal,
        snapshots: SnapshotStore,
        last_seq: int,
        last_ts: int,
        snapshot_seq: int,
        options: MatcherOptions,
        md_port: MarketDataPort | None = None,
    ) -> None:
        # The live assets and instruments are the engine's (recovered from the journal and
        # snapshots), of which `config` is only the start.
        self.config = engine.config
        self.engine = engine
        self.journal = journal
        self.snapshots = snapshots
        self.options = options
        self.md_port: MarketDataPort = md_port if md_port is not None else NullMarketData()
        self.symbols = sorted(self.config.instruments)
        self._listing_changes = engine.listing_changes
        self.next_seq = last_seq + 1
        self.last_ts = last_ts
        self.queue: deque[Pending] = deque()
        self.server: LinkServer | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._failed: BaseException | None = None
        self._journal_exec = ThreadPoolExecutor(1, thread_name_prefix="journal")
        self.snapshotter = Snapshotter(
            engine=engine, snapshots=snapshots, journal=journal, journal_exec=self._journal_exec,
            snapshot_seq=snapshot_seq, every=options.snapshot_every,
            interval_s=options.snapshot_interval_s, fork=options.snapshot_fork,
            prune_journal=options.prune_journal)
        self.ready: asyncio.Event | None = None

    # ---- LinkHandler ----------------------------------------------------------------------------

    def welcome(self) -> Welcome:
        return Welcome(
            matcher_id=self.options.matcher_id,
            version=PROTOCOL_VERSION,
            config=self.config,
            symbols=self.symbols,
            last_seq=self.engine.last_seq,
        )

    @property
    def accepting(self) -> bool:
        return not self._stopping and self._failed is None

    def room(self) -> int:
        room = self.options.max_queue - len(self.queue)
        if room <= 0:
            QUEUE_FULL.inc()
        return room

    def wake(self) -> None:
        assert self._wakeup is not None
        self._wakeup.set()

    def submit(self, link: GatewayLink, req_id: int, raw: bytes, command: Command) -> None:
        if len(raw) > MAX_COMMAND_BYTES:
            # The journal bounds a record; a command this big is refused, never sequenced.
            REFUSED.inc()
            link.refuse(req_id, Code.TOO_LARGE, f"command over {MAX_COMMAND_BYTES} bytes")
            return
        if self._stopping or self._failed is not None:
            REFUSED.inc()
            link.refuse(req_id, Code.INTERNAL if self._failed else Code.OVERLOADED,
                        "matcher failed" if self._failed else "matcher stopping")
            return
        self.queue.append((link, req_id, raw, command))
        assert self._wakeup is not None
        self._wakeup.set()

    def answer(self, query: Query) -> QueryResult:
        return self.engine.answer(query)

    def link_lost(self, link: GatewayLink) -> None:
        """Cancel-on-disconnect: journal a CancelAll for each session that asked for it."""
        if self._stopping or self._failed is not None:
            return
        seen: set[tuple[int, str]] = set()
        for session_id, (account_id, mode) in link.sessions.items():
            if mode == CancelOnDisconnect.NONE:
                continue
            key = (account_id, session_id if mode == CancelOnDisconnect.SESSION else "")
            if key in seen:
                continue
            seen.add(key)
            command = CancelAll(account_id=account_id, session_id=key[1], reason="disconnect")
            # The matcher's own commands bypass the bound: at most one per session of a link.
            self.queue.append((None, 0, encode_command(command), command))
        if seen:
            log.info("cancel_on_disconnect", gateway_id=link.gateway_id, cancels=len(seen))
            assert self._wakeup is not None
            self._wakeup.set()
        link.sessions.clear()

    # ---- running --------------------------------------------------------------------------------

    async def run(self, listen: str) -> int:
        """Serve until stop() or a fatal error. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self.ready = self.ready or asyncio.Event()
        self.server = LinkServer(self)
        self.server.on_tick = self._on_tick
        await self.md_port.start()
        await self.server.start(listen)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        log.info("matcher_listening", listen=listen, symbols=self.symbols,
                 last_seq=self.engine.last_seq)
        self.ready.set()
        code = 0
        try:
            await self._batch_loop()
        except OSError as exc:
            code = 2
            self._fail(exc)
        except Exception as exc:
            code = 3
            log.exception("matcher_failed")
            self._fail(exc)
        try:
            # A second SIGTERM while shutting down is ignored (stop() is idempotent).
            await self._shutdown(code)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        return code

    def stop(self) -> None:
        """Graceful stop: refuse new commands, finish what was received, snapshot, close."""
        if not self._stopping:
            log.info("matcher_stopping", last_seq=self.engine.last_seq, queued=len(self.queue))
            self._stopping = True
            if self._wakeup is not None:
                self._wakeup.set()

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        log.error("journal_failed" if isinstance(exc, OSError) else "matcher_failed",
                  error=repr(exc), last_acked_seq=self.engine.last_seq,
                  detail="no further acknowledgements; stopping. Restart recovers every "
                  "acknowledged command from the journal.")
        # Commands never given a seq: their outcome is known (nothing happened).
        for link, req_id, _, _ in self.queue:
            if link is not None:
                REFUSED.inc()
                link.refuse(req_id, Code.INTERNAL, "matcher journal failed")
        self.queue.clear()

    async def _shutdown(self, code: int) -> None:
        server = self.server
        assert server is not None
        snapshotter = self.snapshotter
        if snapshotter.task is not None:
            with contextlib.suppress(Exception):
                await snapshotter.task
        if code == 0 and self.options.snapshot_on_stop and snapshotter.behind:
            snapshotter.take()
            if snapshotter.task is not None:
                await snapshotter.task
        if code == 0:
            server.close_links("matcher stopping")
        else:
            # Commands of the failed batch may or may not be on disk: dropping the link makes
            # the gateway answer "outcome unknown" rather than anything definite.
            for link in list(server.links):
                link.flush()
            server.abort_links("journal_failed")
        await server.stop()
        with contextlib.suppress(Exception):
            await self.md_port.stop()
        await asyncio.get_running_loop().run_in_executor(self._journal_exec, self.journal.close)
        self._journal_exec.shutdown(wait=True)
        snapshotter.shutdown()
        log.info("matcher_stopped", code=code, last_seq=self.engine.last_seq,
                 state_hash=self.engine.state_hash())

    def _take_batch(self) -> tuple[list[Pending], int, int, bytes]:
        queue = self.queue
        n = min(len(queue), self.options.max_batch)
        popleft = queue.popleft
        batch = [popleft() for _ in range(n)]
        first_seq = self.next_seq
        self.next_seq = first_seq + n
        ts = time.time_ns()
        if ts < self.last_ts:
            ts = self.last_ts  # the wall clock stepped back: keep ts non-decreasing
        self.last_ts = ts
        data = encode_batch(first_seq, ts, [item[2] for item in batch])
        if self.server is not None and self.server.paused:
            self.server.resume_paused()
        return batch, first_seq, ts, data

    def _timed(self, first_seq: int, data: bytes | None) -> float:
        """In the journal thread: (rotate, write and) fsync; returns the seconds it took."""
        started = time.perf_counter()
        if data is None:
            self.journal.sync()
        else:
            self.journal.append(first_seq, data)
        return time.perf_counter() - started

    def _start_write(self, first_seq: int, data: bytes, *,
                     idle: bool = False) -> asyncio.Future[float]:
        """Start making a batch durable. Writing to the page cache happens here, the fsync in
        the journal thread; a rotation (file create + directory fsync) or a zero-fill of the
        next preallocated chunk (zero write + fdatasync) goes there whole, with the batch."""
        loop = asyncio.get_running_loop()
        journal = self.journal
        if journal.needs_rotation() or journal.needs_space(len(data)):
            return loop.run_in_executor(self._journal_exec, self._timed, first_seq, data)
        journal.write(data)
        if journal.fsync and (not idle or self.queue or len(data) > INLINE_FSYNC_MAX_BYTES):
            return loop.run_in_executor(self._journal_exec, self._timed, first_seq, None)
        # Woken from idle, nothing else waiting, a small batch (low load): an fsync here
        # blocks nothing that could have run meanwhile (no earlier batch awaits its acks),
        # and saves the two thread wake-ups of the journal thread, which dominate a small
        # batch's ack latency on a virtual machine.
        done: asyncio.Future[float] = loop.create_future()
        done.set_result(self._timed(first_seq, None) if journal.fsync else 0.0)
        return done

    async def _batch_loop(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        inflight: tuple[list[Pending], int, int, int, asyncio.Future[float]] | None = None
        while True:
            if inflight is None:
                if not self.queue:
                    if self._stopping:
                        return
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                batch, first_seq, ts, data = self._take_batch()
                inflight = (batch, first_seq, ts, len(data),
                            self._start_write(first_seq, data, idle=True))
            batch, first_seq, ts, size, fut = inflight
            seconds = await fut  # OSError here is fatal: see run()
            figures = BATCHES
            figures.fsync_seconds.observe(seconds)
            figures.journal_bytes += size
            inflight = None
            write_error: OSError | None = None
            if self.queue:
                nbatch, nfirst, nts, ndata = self._take_batch()
                try:
                    inflight = (nbatch, nfirst, nts, len(ndata), self._start_write(nfirst, ndata))
                except OSError as exc:
                    write_error = exc  # batch N is durable: answer it, then stop
            figures.queue_depth = len(self.queue)
            self._apply(batch, first_seq, ts)
            if write_error is not None:
                raise write_error
            self._maybe_snapshot()

    def _apply(self, batch: list[Pending], first_seq: int, ts: int) -> None:
        apply = self.engine.apply
        server = self.server
        assert server is not None
        interest = server.interest
        order_types = _ORDER_EVENT_TYPES
        reported: set[GatewayLink] = set()
        answered: set[GatewayLink] = set()
        batch_events: list[Event] = []
        seq = first_seq
        for link, req_id, _, command in batch:
            events = apply(command, seq, ts)
            if link is not None and not link.closed:
                # Straight into the link's buffer, written once per link after the batch.
                try:
                    append_frame(link.out, Result(req_id=req_id, seq=seq, events=events))
                except FrameTooLarge:
                    self._send_large_result(link, req_id, seq, events)
                answered.add(link)
            if interest:
                for event in events:
                    if type(event) in order_types:
                        targets = interest.get(event.account_id)  # type: ignore[union-attr]
                        if targets:
                            for target in targets:
                                if target is not link:
                                    target.reports.append(event)
                                    reported.add(target)
            if type(command) is RevokeApiKey and type(events[0]) is ApiKeyRevoked:
                # Journaled (this runs after the batch's fsync): every gateway closes the
                # key's sessions and drops it from its key cache. A link still in its
                # handshake knows no key yet; a gateway drops its whole cache on (re)connect.
                revoked = KeyRevoked(api_key=command.api_key)
                for gateway in list(server.links):
                    if gateway.welcomed:
                        gateway.send(revoked)
            elif type(command) is SetKeyLimits and type(events[0]) is KeyLimitsSet:
                # The same, for a key's new rate-limit tier: live sessions take it at once
                # rather than when the gateway's key cache expires.
                changed = events[0]
                limits = KeyLimitsChanged(api_key=changed.api_key,
                                          orders_limit=changed.orders_limit,
                                          requests_limit=changed.requests_limit)
                for gateway in list(server.links):
                    if gateway.welcomed:
                        gateway.send(limits)
            batch_events.extend(events)
            seq += 1
        if self.engine.listing_changes != self._listing_changes:
            # Rare, so checked once per batch rather than per command; before the flush, so
            # that a submitter gets its Result and the new set in one write.
            self._listing_changed()
        for target in reported:
            pending, target.reports = target.reports, []
            for start in range(0, len(pending), REPORTS_PER_FRAME):
                target.send(Reports(events=pending[start : start + REPORTS_PER_FRAME]))  # type: ignore[arg-type]
        for link in answered:
            link.flush()
        n = len(batch)
        figures = BATCHES
        figures.batch_size.observe(n)
        figures.commands += n
        figures.last_seq = seq - 1
        try:
            self.md_port.on_batch(batch_events, ts)
        except Exception:
            log.exception("md_port_failed", seq=seq - 1)

    def _listing_changed(self) -> None:
        """Listing commands of this batch changed the live set (this runs after the batch's
        fsync): tell every welcomed gateway the whole set, and start the feed of each new
        symbol from the empty book it had when the batch began (its events follow)."""
        server = self.server
        assert server is not None
        self._listing_changes = self.engine.listing_changes
        listed = [s for s in self.config.instruments if s not in self.symbols]
        self.symbols = sorted(self.config.instruments)
        message = Instruments(config=self.config, symbols=self.symbols)
        for gateway in list(server.links):
            if gateway.welcomed:
                gateway.send(message)
        # A port that keeps per-symbol state (the publisher) starts each symbol it will
        # publish, as it does for every symbol after recovery: heartbeats and a ticker at once.
        prime = getattr(self.md_port, "prime", None)
        if listed and prime is not None:
            try:
                prime([BookSnapshot(symbol=symbol, book_seq=0, last_trade_id=0, bids=[],
                                    asks=[]) for symbol in listed])
            except Exception:
                log.exception("md_port_failed", symbols=listed)
        log.info("instruments_changed", symbols=self.symbols, listed=listed)

    def _send_large_result(
        self, link: GatewayLink, req_id: int, seq: int, events: list[Event]
    ) -> None:
        """A Result too big for one frame (a huge CancelAll): order events go as Reports."""
        orders = [e for e in events if type(e) in _ORDER_EVENT_TYPES]
        rest = [e for e in events if type(e) not in _ORDER_EVENT_TYPES]
        for start in range(0, len(orders), REPORTS_PER_FRAME):
            link.send(Reports(events=orders[start : start + REPORTS_PER_FRAME]))  # type: ignore[arg-type]
        link.send(Result(req_id=req_id, seq=seq, events=rest))
        log.warning("result_split", gateway_id=link.gateway_id, seq=seq, events=len(events))

    # ---- snapshots ------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        self.md_port.on_tick(time.time_ns())
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        if self._failed is None:
            self.snapshotter.maybe_take()
