"""The FIX 4.4 session layer as a sans-I/O state machine (QuickFIX acceptor behaviour).

It owns sequence numbers, heartbeats, test requests, resend requests and logout; it knows
nothing of sockets or of orders. `on_message` and `on_timer` return what to do: bytes to send,
an application message to hand on, a logon to authenticate, or a disconnect.

Rules kept here (docs/PROTOCOL.md, FIX section):
- Logon first; anything else first is a disconnect. `141=Y` resets both sequence numbers.
- MsgSeqNum too high: ResendRequest for the gap (the too-high message is not processed; the
  counterparty resends it). Too low without PossDupFlag(43=Y): Logout and disconnect.
- Sequence numbers belong to the session (SenderCompID, TargetCompID), not the connection:
  with a store (gateway.fix.store) they are loaded at the Logon and saved as they move, and
  the application messages sent are kept. A ResendRequest replays those with
  PossDupFlag(43)=Y and OrigSendingTime(122); runs of session-level or no longer stored
  messages become one SequenceReset-GapFill each.
- Heartbeat when we have sent nothing for HeartBtInt; TestRequest when we have heard nothing
  for HeartBtInt plus a grace; disconnect when the TestRequest goes unanswered.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from gateway.fix.codec import FixMessage, encode
from gateway.fix.store import SessionStore

MIN_HEARTBEAT_S = 1
MAX_HEARTBEAT_S = 300
# Heartbeat grace: QuickFIX waits 1.2 x HeartBtInt before sending a TestRequest.
_GRACE = 1.2

# Admin message types handled here; everything else is application-level.
ADMIN_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})


class State(enum.Enum):
    AWAITING_LOGON = "awaiting_logon"
    AUTHENTICATING = "authenticating"
    ACTIVE = "active"
    LOGGING_OUT = "logging_out"
    CLOSED = "closed"


@dataclass(slots=True, frozen=True)
class Send:
    data: bytes


@dataclass(slots=True, frozen=True)
class Deliver:
    """An application message, in sequence, for the order-entry layer."""

    message: FixMessage


@dataclass(slots=True, frozen=True)
class Authenticate:
    """A Logon to check (key, signature, window); answer with accept_logon / reject_logon."""

    message: FixMessage


@dataclass(slots=True, frozen=True)
class Disconnect:
    reason: str


Action = Send | Deliver | Authenticate | Disconnect


def sending_time(now_s: float) -> str:
    """UTCTimestamp with milliseconds, FIX's format for SendingTime (52)."""
    seconds = int(now_s)
    millis = int((now_s - seconds) * 1000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}"


class FixSession:
    def __init__(self, our_comp_id: str) -> None:
        self.our_comp_id = our_comp_id
        self.their_comp_id = ""
        self.state = State.AWAITING_LOGON
        self.next_in = 1  # MsgSeqNum we expect next
        self.next_out = 1  # MsgSeqNum we send next
        self.heartbeat_s = 30
        self._last_sent = 0.0
        self._last_received = 0.0
        self._test_request_pending: str | None = None
        self._resend_requested_up_to = 0
        self._logon_seq = 0
        self.store: SessionStore | None = None
        self.resent = 0  # application messages replayed for ResendRequests
        self.gap_filled = 0  # sequence numbers covered by GapFills instead

    # ----- outgoing -----
    def build(self, msg_type: str, body: list[tuple[int, str]], now: float) -> bytes:
        seq = self.next_out
        stamp = sending_time(now)
        header = [
            (49, self.our_comp_id),
            (56, self.their_comp_id),
            (34, str(seq)),
            (52, stamp),
        ]
        self.next_out = seq + 1
        self._last_sent = now
        store = self.store
        if store is not None:
            # Stored before it is written: a resend can always replay what was sent.
            if msg_type not in ADMIN_TYPES:
                store.save(seq, stamp, msg_type, body)
            store.next_out = self.next_out
            store.save_numbers()
        return encode(msg_type, header, body)

    def _received(self) -> None:
        """The expected inbound MsgSeqNum moved: keep it with the session."""
        store = self.store
        if store is not None:
            store.next_in = self.next_in
            store.save_numbers()

    def send(self, msg_type: str, body: list[tuple[int, str]], now: float) -> Send:
        return Send(self.build(msg_type, body, now))

    # ----- logon outcome -----
    def accept_logon(self, logon: FixMessage, now: float,
                     store: SessionStore | None = None) -> list[Action]:
        """Confirm an authenticated Logon; with `store`, the session continues from the
        sequence numbers it had (or starts again from 1 with 141=Y)."""
        if self.state is not State.AUTHENTICATING:
            return []
        reset = logon.get(141) == "Y"
        if store is not None:
            if reset:
                store.reset(int(now))
            else:
                self.next_in, self.next_out = store.next_in, store.next_out
        if self._logon_seq < self.next_in:
            return self.reject_logon(
                f"MsgSeqNum too low, expecting {self.next_in} but received {self._logon_seq}",
                now)
        self.store = store
        self.state = State.ACTIVE
        body = [(98, "0"), (108, str(self.heartbeat_s))]
        if reset:
            body.append((141, "Y"))
        actions: list[Action] = [self.send("A", body, now)]
        if self._logon_seq > self.next_in:
            # Messages before the Logon went missing: ask for them after confirming.
            actions += self._request_resend(self._logon_seq, now)
        else:
            self.next_in = self._logon_seq + 1
            self._received()
        return actions

    def reject_logon(self, text: str, now: float) -> list[Action]:
        self.state = State.CLOSED
        return [self.send("5", [(58, text)], now), Disconnect(f"logon rejected: {text}")]

    def logout(self, text: str, now: float) -> list[Action]:
        self.state = State.LOGGING_OUT
        return [self.send("5", [(58, text)], now), Disconnect(text)]

    # ----- incoming -----
    def on_message(self, msg: FixMessage, now: float) -> list[Action]:
        self._last_received = now
        self._test_request_pending = None
        msg_type = msg.msg_type
        seq = msg.get_int(34)
        if self.state is State.AWAITING_LOGON:
            return self._on_first_message(msg, seq, now)
        if self.state in (State.CLOSED, State.LOGGING_OUT):
            return []
        if self.state is State.AUTHENTICATING:
            return []  # nothing is processed until the logon is decided
        if seq is None:
            return [self._session_reject(msg, 0, 34, 1, "Required tag missing", now)]
        if msg_type == "4" and msg.get(123) != "Y":
            return self._on_sequence_reset(msg, now)
        if seq > self.next_in:
            return self._request_resend(seq, now)
        if seq < self.next_in:
            if msg.get(43) == "Y":
                return []  # a duplicate we have already processed
            return self.logout(
                f"MsgSeqNum too low, expecting {self.next_in} but received {seq}", now
            )
        self.next_in += 1
        self._received()
        return self._dispatch(msg, msg_type, now)

    def _on_first_message(self, msg: FixMessage, seq: int | None, now: float) -> list[Action]:
        if msg.msg_type != "A":
            self.state = State.CLOSED
            return [Disconnect("first message was not Logon")]
        their = msg.get(49)
        ours = msg.get(56)
        hb = msg.get_int(108)
        if not their or ours != self.our_comp_id or seq is None or hb is None:
            self.state = State.CLOSED
            return [Disconnect("Logon lacks SenderCompID/TargetCompID/MsgSeqNum/HeartBtInt")]
        self.their_comp_id = their
        if not MIN_HEARTBEAT_S <= hb <= MAX_HEARTBEAT_S:
            return self.reject_logon("HeartBtInt out of range", now)
        self.heartbeat_s = hb
        if msg.get(141) == "Y":
            self.next_out = 1
            if seq != 1:
                return self.reject_logon("ResetSeqNumFlag with MsgSeqNum other than 1", now)
            self.next_in = 1
        # MsgSeqNum is checked once the session's numbers are known (accept_logon).
        # A too-high Logon is accepted and then followed by a ResendRequest.
        self._logon_seq = seq
        self.state = State.AUTHENTICATING
        return [Authenticate(msg)]

    def _dispatch(self, msg: FixMessage, msg_type: str, now: float) -> list[Action]:
        match msg_type:
            case "0":
                return []
            case "1":
                return [self.send("0", [(112, msg.get(112) or "")], now)]
            case "2":
                return self._on_resend_request(msg, now)
            case "3":
                return []
            case "4":
                return self._on_sequence_reset(msg, now)
            case "5":
                self.state = State.CLOSED
                return [self.send("5", [], now), Disconnect("logout by counterparty")]
            case "A":
                return [self._session_reject(msg, msg.get_int(34) or 0, 35, 11,
                                             "Logon already received", now)]
            case _:
                return [Deliver(msg)]

    def _on_resend_request(self, msg: FixMessage, now: float) -> list[Action]:
        begin = msg.get_int(7)
        if begin is None or begin < 1:
            return [self._session_reject(msg, msg.get_int(34) or 0, 7, 5,
                                         "Value is incorrect for BeginSeqNo", now)]
        last = self.next_out - 1
        end = msg.get_int(16) or 0
        if end == 0 or end > last:
            end = last  # 0: everything up to the newest sent
        if begin > end:
            return []
        self._last_sent = now
        stored = self.store.stored(begin, end) if self.store is not None else []
        actions: list[Action] = []
        gap_start = begin
        for message in stored:
            if message.seq > gap_start:
                actions.append(self._gap_fill(gap_start, message.seq, now))
            actions.append(self._resend(message.seq, message.msg_type, message.body,
                                        message.sending_time, now))
            gap_start = message.seq + 1
        if gap_start <= end:
            actions.append(self._gap_fill(gap_start, end + 1, now))
        return actions

    def _possdup_header(self, seq: int, orig_sending_time: str, now: float
                        ) -> list[tuple[int, str]]:
        return [
            (49, self.our_comp_id),
            (56, self.their_comp_id),
            (34, str(seq)),
            (43, "Y"),
            (52, sending_time(now)),
            (122, orig_sending_time),
        ]

    def _resend(self, seq: int, msg_type: str, body: list[tuple[int, str]],
                orig_sending_time: str, now: float) -> Send:
        self.resent += 1
        return Send(encode(msg_type, self._possdup_header(seq, orig_sending_time, now), body))

    def _gap_fill(self, first: int, new_seq: int, now: float) -> Send:
        """SequenceReset-GapFill standing for `first` .. `new_seq` - 1."""
        self.gap_filled += new_seq - first
        stamp = sending_time(now)
        return Send(encode("4", self._possdup_header(first, stamp, now),
                           [(123, "Y"), (36, str(new_seq))]))

    def _on_sequence_reset(self, msg: FixMessage, now: float) -> list[Action]:
        new_seq = msg.get_int(36)
        if new_seq is None:
            return [self._session_reject(msg, msg.get_int(34) or 0, 36, 1,
                                         "Required tag missing", now)]
        if new_seq < self.next_in:
            return [self._session_reject(msg, msg.get_int(34) or 0, 36, 5,
                                         "NewSeqNo may not lower the expected MsgSeqNum", now)]
        self.next_in = new_seq
        self._received()
        return []

    def _request_resend(self, seq: int, now: float) -> list[Action]:
        pending = self._resend_requested_up_to >= self.next_in
        self._resend_requested_up_to = max(self._resend_requested_up_to, seq)
        if pending:
            return []  # the open-ended request already covers this message
        return [self.send("2", [(7, str(self.next_in)), (16, "0")], now)]

    def _session_reject(
        self, msg: FixMessage, ref_seq: int, ref_tag: int, reason: int, text: str, now: float
    ) -> Send:
        return self.send(
            "3",
            [(45, str(ref_seq)), (371, str(ref_tag)), (372, msg.msg_type), (373, str(reason)),
             (58, text)],
            now,
        )

    def business_reject(self, msg: FixMessage, reason: int, text: str, now: float) -> Send:
        """BusinessMessageReject (j): 380=3 unsupported type, 5 conditionally required field."""
        return self.send(
            "j",
            [(45, msg.get(34) or "0"), (372, msg.msg_type), (380, str(reason)), (58, text)],
            now,
        )

    # ----- timers -----
    def on_timer(self, now: float) -> list[Action]:
        if self.state is not State.ACTIVE:
            return []
        actions: list[Action] = []
        silent_for = now - self._last_received
        if self._test_request_pending is not None:
            if silent_for > 2 * self.heartbeat_s * _GRACE:
                self.state = State.CLOSED
                return [Disconnect("TestRequest not answered")]
        elif silent_for > self.heartbeat_s * _GRACE:
            self._test_request_pending = f"TEST-{self.next_out}"
            actions.append(self.send("1", [(112, self._test_request_pending)], now))
        if now - self._last_sent >= self.heartbeat_s:
            actions.append(self.send("0", [], now))
        return actions
