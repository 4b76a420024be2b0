"""FIX session layer: logon, sequence numbers, resend, heartbeats, logout (sans I/O)."""

from __future__ import annotations

from gateway.fix.codec import FixMessage, FixStreamParser, encode
from gateway.fix.session import Authenticate, Deliver, Disconnect, FixSession, Send, State


def msg(msg_type: str, seq: int, body: list[tuple[int, str]] | None = None,
        extra_header: list[tuple[int, str]] | None = None) -> FixMessage:
    header = [(49, "CLIENT"), (56, "EXCH"), (34, str(seq)), (52, "20261124-08:00:00.000")]
    raw = encode(msg_type, header + (extra_header or []), body or [])
    (parsed,) = FixStreamParser().feed(raw)
    return parsed


def sent(actions: list[object]) -> list[FixMessage]:
    out: list[FixMessage] = []
    parser = FixStreamParser()
    for action in actions:
        if isinstance(action, Send):
            out.extend(parser.feed(action.data))
    return out


def logged_on(now: float = 1000.0) -> FixSession:
    session = FixSession("EXCH")
    logon = msg("A", 1, [(98, "0"), (108, "30"), (141, "Y")])
    (auth,) = session.on_message(logon, now)
    assert isinstance(auth, Authenticate)
    reply = sent(session.accept_logon(logon, now))
    assert [m.msg_type for m in reply] == ["A"] and reply[0].get(141) == "Y"
    assert session.state is State.ACTIVE and session.next_in == 2
    return session


def test_first_message_must_be_logon() -> None:
    session = FixSession("EXCH")
    (action,) = session.on_message(msg("D", 1), 0.0)
    assert isinstance(action, Disconnect) and session.state is State.CLOSED


def test_wrong_target_comp_id_disconnects() -> None:
    session = FixSession("OTHER")
    actions = session.on_message(msg("A", 1, [(98, "0"), (108, "30")]), 0.0)
    assert isinstance(actions[-1], Disconnect)


def test_rejected_logon_sends_logout_then_disconnects() -> None:
    session = FixSession("EXCH")
    logon = msg("A", 1, [(98, "0"), (108, "30")])
    session.on_message(logon, 0.0)
    actions = session.reject_logon("logon rejected", 0.0)
    assert [m.msg_type for m in sent(actions)] == ["5"]
    assert isinstance(actions[-1], Disconnect)


def test_application_messages_are_delivered_in_sequence() -> None:
    session = logged_on()
    (action,) = session.on_message(msg("D", 2, [(11, "c1")]), 1001.0)
    assert isinstance(action, Deliver) and action.message.get(11) == "c1"
    assert session.next_in == 3


def test_seq_too_high_requests_resend_once_and_does_not_deliver() -> None:
    session = logged_on()
    first = session.on_message(msg("D", 5), 1001.0)
    (resend,) = sent(first)
    assert resend.msg_type == "2" and resend.get(7) == "2" and resend.get(16) == "0"
    assert session.on_message(msg("D", 6), 1001.0) == []  # same gap: asked already
    assert session.next_in == 2


def test_seq_too_low_without_possdup_logs_out() -> None:
    session = logged_on()
    session.on_message(msg("0", 2), 1001.0)
    actions = session.on_message(msg("0", 2), 1002.0)
    assert [m.msg_type for m in sent(actions)] == ["5"]
    assert isinstance(actions[-1], Disconnect)


def test_seq_too_low_with_possdup_is_ignored() -> None:
    session = logged_on()
    session.on_message(msg("0", 2), 1001.0)
    assert session.on_message(msg("D", 2, extra_header=[(43, "Y")]), 1002.0) == []
    assert session.state is State.ACTIVE


def test_resend_request_is_answered_with_gap_fill() -> None:
    session = logged_on()
    out_before = session.next_out
    (reply,) = sent(session.on_message(msg("2", 2, [(7, "1"), (16, "0")]), 1001.0))
    assert reply.msg_type == "4" and reply.get(123) == "Y" and reply.get(43) == "Y"
    assert reply.get(34) == "1" and reply.get(36) == str(out_before)
    assert session.next_out == out_before  # a gap fill does not consume a sequence number


def test_sequence_reset_gap_fill_moves_expected_seq() -> None:
    session = logged_on()
    assert session.on_message(msg("4", 2, [(123, "Y"), (36, "10")]), 1001.0) == []
    assert session.next_in == 10


def test_test_request_is_answered_with_its_id() -> None:
    session = logged_on()
    (reply,) = sent(session.on_message(msg("1", 2, [(112, "abc")]), 1001.0))
    assert reply.msg_type == "0" and reply.get(112) == "abc"


def test_heartbeat_and_test_request_timers() -> None:
    session = logged_on(now=1000.0)
    assert [m.msg_type for m in sent(session.on_timer(1030.0))] == ["0"]
    # Silent for more than 1.2 x HeartBtInt: a TestRequest.
    types = [m.msg_type for m in sent(session.on_timer(1037.0))]
    assert "1" in types
    # Still silent: disconnect.
    actions = session.on_timer(1073.0)
    assert any(isinstance(a, Disconnect) for a in actions)


def test_logout_is_confirmed() -> None:
    session = logged_on()
    actions = session.on_message(msg("5", 2), 1001.0)
    assert [m.msg_type for m in sent(actions)] == ["5"]
    assert isinstance(actions[-1], Disconnect)


def test_outgoing_seq_numbers_are_contiguous() -> None:
    session = logged_on()
    seqs = [int(m.get(34) or 0) for m in sent(
        [session.send("0", [], 1001.0), session.send("0", [], 1002.0)])]
    assert seqs == [2, 3]
