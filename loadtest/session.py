"""One trading session: sends its mix without waiting, matches answers, checks reports.

The connection is the lean `loadtest.ws` client: every message arrives through
`on_message` straight from the protocol's `data_received`. The send path never waits for
anything: `queue` splices the request id into the action's encoded body, registers the
action itself as the pending request and frames it; `flush` writes what one pacing pass
queued on this connection with one write and records each request's send lag against the
time after that write (`send` is both at once).
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from loadtest import wire
from loadtest.checks import UNDECODABLE, AckTracker, SessionChecker, Violations
from loadtest.mix import Action, Mix, request_body
from loadtest.recorder import Recorder
from loadtest.ws import WsClient

# A session whose unanswered requests reach this bound stops sending until answers come
# back (counted as not_sent): the generator's memory stays bounded even against a dead server.
MAX_PENDING = 50_000
# Refused cancels/amends kept for the end-of-run race classification.
MAX_REFUSALS = 100_000
CLEANUP = "cleanup"
UNKNOWN_ORDER = 3005  # what a cancel/amend of an order that is already gone gets
CANCEL_ALL = request_body("orders.cancel_all", {})


class LogonError(RuntimeError):
    pass


class Session:
    def __init__(
        self,
        name: str,
        mix: Mix,
        recorder: Recorder,
        violations: Violations,
    ) -> None:
        self.name = name
        self.conn: WsClient | None = None
        self.mix = mix
        self.rec = recorder
        self.acks = AckTracker(name, violations)
        self.checker = SessionChecker(name, violations)
        self.next_id = 1
        self.not_sent = 0
        # Refused cancels/amends: (client_order_id, method, code), classified at the end.
        self.refused: list[tuple[str, str, int]] = []
        self.last_ack_ns = 0
        self._queued: list[int] = []  # scheduled times of the requests queued, not yet written
        self._logon_id = 0
        self._logon_reply: asyncio.Future[wire.Inbound] | None = None

    async def connect(self, url: str) -> None:
        ws_url = url.replace("http://", "ws://", 1) + "/ws/trade"
        self.conn = await WsClient.connect(ws_url, self.on_message)

    async def logon(self, api_key: str, secret: str, timeout_s: float = 10.0) -> None:
        assert self.conn is not None
        nonce = f"{self.name}-{time.time_ns()}"
        params = wire.logon_params(api_key, secret, time.time_ns() // 1_000_000, nonce)
        params["cancel_on_disconnect"] = "session"
        self._logon_id = self._take_id()
        reply: asyncio.Future[wire.Inbound] = asyncio.get_running_loop().create_future()
        self._logon_reply = reply

        def closed(_: object) -> None:
            if not reply.done():
                reply.set_exception(LogonError(f"{self.name}: connection closed during logon"))

        self.conn.closed.add_done_callback(closed)
        self.conn.send(wire.request(self._logon_id, "session.logon", params))
        try:
            answer = await asyncio.wait_for(reply, timeout_s)
        except TimeoutError as exc:
            raise LogonError(f"{self.name}: no answer to logon") from exc
        finally:
            self.conn.closed.remove_done_callback(closed)
        self._logon_reply = None
        if answer.status != 200:
            err = answer.error
            raise LogonError(f"{self.name}: logon refused: {err.code if err else answer.status}")

    def _take_id(self) -> int:
        req_id = self.next_id
        self.next_id += 1
        return req_id

    def queue(self, action: Action, scheduled_ns: int) -> bool:
        """Queue one scheduled request for `flush`; False if a bound (backlog, write buffer)
        stopped it (counted as not sent)."""
        conn = self.conn
        pending = self.acks.pending
        if len(pending) >= MAX_PENDING or conn is None or not conn.can_send():
            self.not_sent += 1
            return False
        req_id = self.next_id
        self.next_id = req_id + 1
        conn.queue(b'{"id":%d%b' % (req_id, action.body))
        action.scheduled_ns = scheduled_ns
        pending[req_id] = action
        self._queued.append(scheduled_ns)
        return True

    @property
    def queued(self) -> int:
        return len(self._queued)

    def flush(self) -> int:
        """Write the queued requests (one write) and record their send lag; returns the
        monotonic time just after the write (the send time)."""
        if self.conn is not None:
            self.conn.flush()
        sent_ns = time.monotonic_ns()
        queued = self._queued
        if len(queued) == 1:
            self.rec.on_sent(queued[0], sent_ns)
        else:
            on_sent = self.rec.on_sent
            for scheduled_ns in queued:
                on_sent(scheduled_ns, sent_ns)
        queued.clear()
        return sent_ns

    def send(self, action: Action, scheduled_ns: int) -> bool:
        """Send one scheduled request now; False if a bound stopped it."""
        ok = self.queue(action, scheduled_ns)
        self.flush()
        return ok

    def send_cleanup(self) -> None:
        """Cancel everything this session left open (not measured)."""
        if self.conn is None:
            return
        req_id = self._take_id()
        if self.conn.send(b'{"id":%d%b' % (req_id, CANCEL_ALL)):
            self.acks.sent(req_id, Action(CLEANUP, "orders.cancel_all", CANCEL_ALL, "",
                                          scheduled_ns=time.monotonic_ns()))

    def on_message(self, data: bytes | str, recv_ns: int) -> None:
        try:
            msg = wire.inbound_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.acks.v.add(UNDECODABLE, f"{self.name}: {exc}: {data[:120]!r}")
            return
        if msg.type == "execution":
            self._on_execution(msg)
        elif msg.id is None:
            self.acks.v.add("unexpected_message", f"{self.name}: {data[:120]!r}")
        elif self._logon_reply is not None and msg.id == self._logon_id:
            if not self._logon_reply.done():
                self._logon_reply.set_result(msg)
        else:
            self._on_response(msg, recv_ns)

    def _on_response(self, msg: wire.Inbound, recv_ns: int) -> None:
        action = self.acks.pending.pop(msg.id, None)  # type: ignore[arg-type]
        if action is None:
            action = self.acks.answered(msg.id)  # a violation, or a late answer
        if not isinstance(action, Action) or action.kind == CLEANUP:
            return
        self.last_ack_ns = recv_ns
        code = None if msg.status == 200 else (msg.error.code if msg.error else -1)
        self.rec.on_ack(action.method, action.scheduled_ns, recv_ns, code)
        if code is None:
            order = action.resting
            if order is not None and msg.result is not None:
                status = msg.result.status
                cid = order.client_order_id
                # Track it as open unless it already traded or finished (reports may come
                # before the answer): only untouched resting orders are cancel/amend targets.
                if (
                    status in ("new", "accepted")
                    and cid not in self.checker.done
                    and cid not in self.checker.traded
                ):
                    self.mix.open.add(order)
        elif action.method != "order.place" and len(self.refused) < MAX_REFUSALS:
            self.refused.append((action.client_order_id, action.method, code))

    def _on_execution(self, msg: wire.Inbound) -> None:
        cid = msg.client_order_id or f"order:{msg.order_id}"
        self.checker.on_exec(msg.seq, cid, msg.exec_type, msg.ord_status)
        if msg.exec_type == "trade":
            if msg.ts is not None:
                self.rec.on_fill((time.time_ns() - msg.ts) // 1000)
            # A partly filled order is no longer a clean cancel/amend target.
            self.mix.open.remove(cid)
        elif msg.ord_status in ("canceled", "filled", "rejected", "expired"):
            self.mix.open.remove(cid)

    def _lost_race(self, cid: str) -> bool:
        # The order traded, or the exchange ended it itself (a fill, or self-trade prevention
        # canceling it) while our request was on its way.
        return cid in self.checker.traded or cid in self.checker.done

    def races(self) -> int:
        """Cancels/amends answered 3005 for orders the exchange had already filled or ended."""
        return sum(1 for cid, _, code in self.refused if code == UNKNOWN_ORDER
                   and self._lost_race(cid))

    def unexplained_refusals(self, limit: int = 5) -> list[str]:
        """Examples of refusals that no report explains: these count as errors."""
        out = [f"{self.name}: {method} {cid} refused with {code}"
               for cid, method, code in self.refused
               if code != UNKNOWN_ORDER or not self._lost_race(cid)]
        return out[:limit]
