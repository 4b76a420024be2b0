"""FIX 4.4 application messages: orders in to the trading core, execution reports out.

A FIX connection (server.py) hands each application message the session layer delivers to
this layer: NewOrderSingle (D), OrderCancelRequest (F), OrderCancelReplaceRequest (G) and
OrderStatusRequest (H) go to the trading core, and each order event of the session's account
goes back as an ExecutionReport. FIX names a replaced order by its newest ClOrdID while the
engine keeps the first one, so this layer keeps the ClOrdIDs of replaced orders (in the
session's store, to survive a reconnect) and of cancels and replaces waiting for their report.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, TypeVar

import msgspec
import structlog

from exchange.link.messages import Result
from exchange.model.codes import Code
from exchange.model.commands import AmendOrder, CancelOrder
from exchange.model.events import (
    CancelRejected,
    OrderAmended,
    OrderCanceled,
    OrderEvent,
    OrderRejected,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import GetOrder, OrderState
from gateway.core.outcomes import Refusal, refusal, rejection
from gateway.core.sessions import TradingSession
from gateway.core.trading import READ, TRADE, Pending, TradingCore
from gateway.core.validation import RequestError
from gateway.fix import mapping
from gateway.fix.codec import FixMessage
from gateway.fix.session import FixSession
from gateway.fix.store import SessionStore

log = structlog.get_logger("gateway.fix")

# Open orders whose latest ClOrdID differs from the engine's (after a replace): bounded.
_MAX_CLORDID_ALIASES = 10_000
_Named = TypeVar("_Named", CancelOrder, AmendOrder, GetOrder)
# BusinessRejectReason (380) for a refused OrderStatusRequest: 4 application not available.
_UNAVAILABLE_CODES = (Code.TIMEOUT, Code.INTERNAL)


class _FixPending(Pending):
    """An application message waiting for the matcher, under the core's deadline."""

    __slots__ = ("conn", "msg")

    def __init__(self, conn: FixOrders, msg: FixMessage, *, query: bool = False) -> None:
        super().__init__(conn.core, conn.loop.time(), query=query)
        self.conn = conn
        self.msg = msg

    def answer(self, outcome: Any) -> None:
        if self.query:
            self.conn._status_answer(self.msg, outcome)
        else:
            self.conn._result(self.msg, outcome)

    def refuse(self, refusal: Refusal) -> None:
        self.conn._refuse(self.msg, refusal)

    def describe(self) -> str:
        return f"FIX {self.msg.msg_type}"


class FixOrders(TradingSession):
    """The order traffic of one FIX connection; the connection (server.py) subclasses it
    with the socket, the session layer's timers and the logon."""

    # Set by the connection: the core it trades through, its event loop, its session layer
    # and, once logged on, the session's store.
    core: TradingCore
    loop: asyncio.AbstractEventLoop
    session: FixSession
    store: SessionStore | None

    def __init__(self, peer: str) -> None:
        super().__init__(peer)
        # Replaced orders: order id -> (newest ClOrdID, the one before), and back.
        self._aliases: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._by_clordid: dict[str, int] = {}
        self._pending_replace: dict[int | str, tuple[str, str]] = {}
        self._status_exec = 0
        self._edge_rejects = 0
        self._pending_cancel: dict[int | str, tuple[str, str]] = {}

    def _send(self, msg_type: str, body: list[tuple[int, str]]) -> None:
        """Send one message through the session layer (the connection's)."""
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        """Write bytes the session layer built (the connection's)."""
        raise NotImplementedError

    def _restore_aliases(self, store: SessionStore) -> None:
        """The ClOrdIDs of replaced orders the session kept from its last connection."""
        self._aliases = OrderedDict(store.aliases)
        self._by_clordid = {clordid: oid for oid, (clordid, _) in store.aliases.items()}

    # ---- execution reports -----------------------------------------------------------------

    def _report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        """One ExecutionReport, once: the session remembers the newest account_seq sent."""
        store = self.store
        if store is not None and event.account_seq:
            if event.account_seq <= store.last_account_seq:
                return  # sent already (the catch-up after a logon overlaps live reports)
            store.last_account_seq = event.account_seq  # saved with the MsgSeqNum it takes
        inst = config.instruments[event.symbol]
        clordid, orig = self._clordids(event)
        self._send("8", mapping.execution_report(inst, event, clordid, orig))

    def _clordids(self, event: OrderEvent) -> tuple[str, str | None]:
        """ClOrdID(11) and OrigClOrdID(41) of a report, as FIX 4.4 wants them: a cancel or
        replace answers with the request's own ClOrdID and the one it named; later reports
        of a replaced order carry its newest ClOrdID."""
        clordid, orig = event.client_order_id, None
        request: tuple[str, str] | None = None
        if isinstance(event, OrderAmended):
            request = self._pending_replace.pop(event.order_id, None) or \
                self._pending_replace.pop(event.client_order_id, None)
        elif isinstance(event, OrderCanceled) and event.reason == "user":
            request = self._pending_cancel.pop(event.order_id, None) or \
                self._pending_cancel.pop(event.client_order_id, None)
        if request is not None:
            clordid, orig = request
            if isinstance(event, OrderAmended):
                self._rename(event.order_id, clordid, orig)
        elif event.order_id in self._aliases:
            clordid = self._aliases[event.order_id][0]
        if event.leaves_qty == 0:
            self._forget_alias(event.order_id)
        return clordid, orig

    def _rename(self, order_id: int, clordid: str, orig: str) -> None:
        self._forget_alias(order_id, save=False)
        self._aliases[order_id] = (clordid, orig)
        self._by_clordid[clordid] = order_id
        if len(self._aliases) > _MAX_CLORDID_ALIASES:
            _, (old_clordid, _) = self._aliases.popitem(last=False)
            self._by_clordid.pop(old_clordid, None)
        self._save_aliases()

    def _forget_alias(self, order_id: int, *, save: bool = True) -> None:
        alias = self._aliases.pop(order_id, None)
        if alias is not None:
            self._by_clordid.pop(alias[0], None)
            if save:
                self._save_aliases()

    def _save_aliases(self) -> None:
        """The session keeps them: after a reconnect the new ClOrdIDs still name orders."""
        store = self.store
        if store is not None:
            store.aliases = dict(self._aliases)
            store.save_aliases()

    def _named(self, clordid: str | None) -> int | None:
        """The order a ClOrdID given after a replace names (None: not a renamed one)."""
        return self._by_clordid.get(clordid) if clordid else None

    # ---- application messages --------------------------------------------------------------

    def _application(self, msg: FixMessage) -> None:
        account = self.account_id
        assert account is not None
        msg_type = msg.msg_type
        if msg_type not in ("D", "F", "G", "H"):
            self._write(self.session.business_reject(msg, 3, "unsupported message type",
                                                     time.time()).data)
            return
        core = self.core
        config = core.config
        try:
            core.admit(self, READ if msg_type == "H" else TRADE, order=msg_type in "DG")
            if msg_type == "D":
                place = mapping.new_order_single(config, account, self.session_id, msg)
                core.submit(_FixPending(self, msg), place)
            elif msg_type == "F":
                cancel = self._by_alias(mapping.cancel_request(config, account, msg))
                self._pending_cancel[self._replace_key(cancel.order_id,
                                                       cancel.client_order_id)] = (
                    msg.get(11) or "", msg.get(41) or cancel.client_order_id or "")
                core.submit(_FixPending(self, msg), cancel, cancel=True)
            elif msg_type == "G":
                amend = self._by_alias(mapping.cancel_replace_request(config, account, msg))
                replace = (msg.get(11) or "", msg.get(41) or amend.client_order_id or "")
                self._pending_replace[self._replace_key(amend.order_id,
                                                        amend.client_order_id)] = replace
                core.submit(_FixPending(self, msg), amend)
            else:
                query = self._by_alias(mapping.status_request(config, account, msg))
                core.ask(_FixPending(self, msg, query=True), query)
        except mapping.FixReject as exc:
            self._reject(msg, exc.code, exc.text)
        except RequestError as exc:
            refused = refusal(exc, query=False, retry_after_ms=0)
            assert refused is not None
            self._refuse(msg, refused)

    def _by_alias(self, request: _Named) -> _Named:
        """A request naming an order by a ClOrdID it got in a replace: by its OrderID."""
        if request.order_id is None:
            order_id = self._named(request.client_order_id)
            if order_id is not None:
                return msgspec.structs.replace(request, order_id=order_id,
                                               client_order_id=None)
        return request

    @staticmethod
    def _replace_key(order_id: int | None, client_order_id: str | None) -> int | str:
        """Where a replace waits for its report: by OrderID(37), else OrigClOrdID(41)."""
        return order_id if order_id is not None else client_order_id or ""

    def _forget_replace(self, msg: FixMessage) -> None:
        """A cancel or replace that will have no report (rejected, refused, unknown)."""
        pending = {"G": self._pending_replace, "F": self._pending_cancel}.get(msg.msg_type)
        if pending is not None:
            order_id = msg.get_int(37)
            if order_id is None:
                order_id = self._named(msg.get(41))
            pending.pop(self._replace_key(order_id, msg.get(41)), None)

    def _result(self, msg: FixMessage, result: Result) -> None:
        """The matcher's answer to D, F or G. Every order event (accepted, fills, rejected,
        canceled, replaced) reaches this session as an ExecutionReport through the registry:
        only a rejection that is not an order event needs an answer here."""
        refused = rejection(result)
        if refused is None:
            return
        first = result.events[0] if result.events else None
        if isinstance(first, OrderRejected):
            return
        if isinstance(first, CancelRejected):
            self._forget_replace(msg)
            self._send("9", mapping.cancel_reject(refused.code, msg.get(11) or "", msg.get(41),
                                                  first.order_id, replace=first.amend))
            return
        self._refuse(msg, refused)

    def _status_answer(self, msg: FixMessage, answer: object) -> None:
        if not isinstance(answer, OrderState):
            self._refuse(msg, Refusal(Code.INTERNAL, "unexpected answer"))
            return
        inst = self.core.config.instruments[answer.symbol]
        self._status_exec += 1
        clordid = self._aliases.get(answer.order_id, (answer.client_order_id, ""))[0]
        self._send("8", mapping.status_report(
            inst, answer, f"S-{self.session_id}-{self._status_exec}", time.time_ns(), clordid))

    def _refuse(self, msg: FixMessage, refused: Refusal) -> None:
        """Answer a request the core refused, timed out or could not send (outcomes.py)."""
        if refused.code != Code.TIMEOUT:  # outcome unknown: its report may still come
            self._forget_replace(msg)
        self._reject(msg, refused.code, refused.msg, refused.retry_after_ms)

    def _reject(self, msg: FixMessage, code: Code, text: str,
                retry_after_ms: int | None = None) -> None:
        """Answer a message that changed nothing, or whose outcome is unknown (5001):
        ExecutionReport (D), OrderCancelReject (F, G) or BusinessMessageReject (H)."""
        detail = f"{int(code)} {text}"
        if retry_after_ms is not None:
            detail += f" retry_after_ms={retry_after_ms}"
        unlogged = self.core.rejection_log.take()  # sampled, as on the WebSocket
        if unlogged is None:
            self.core.metrics.rejections_unlogged.inc()
        else:
            log.info("fix_request_rejected", session_id=self.session_id,
                     msg_type=msg.msg_type, code=int(code), unlogged_before=unlogged)
        msg_type = msg.msg_type
        if msg_type in ("F", "G"):
            order_id = msg.get_int(37)
            body = mapping.cancel_reject(code, msg.get(11) or "", msg.get(41), order_id,
                                         replace=msg_type == "G")
            body[-1] = (58, detail)
            self._send("9", body)
        elif msg_type == "D":
            self._edge_rejects += 1
            inst = self.core.config.instruments.get(msg.get(55) or "")
            exec_id = f"R-{self.session_id}-{self._edge_rejects}"
            self._send("8", mapping.edge_reject(msg, code, detail, inst, exec_id))
        else:
            reason = 4 if code in _UNAVAILABLE_CODES else 0
            self._write(self.session.business_reject(msg, reason, detail, time.time()).data)
