"""FIX session store: numbers and sent messages that outlive connections and processes;
resends that replay application messages with PossDupFlag and gap-fill the rest."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from gateway.fix.session import Authenticate, Disconnect, FixSession, State
from gateway.fix.store import FixStore, SessionBusy, SessionOwned
from tests.gateway.fix.test_fix_session import msg, sent

NOW = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


def logon(session: FixSession, store: FixStore, seq: int, *, reset: bool = False,
          now: float = NOW, account_id: int = 7) -> list[object]:
    body = [(98, "0"), (108, "30")] + ([(141, "Y")] if reset else [])
    message = msg("A", seq, body)
    (auth,) = session.on_message(message, now)
    assert isinstance(auth, Authenticate)
    return list(session.accept_logon(message, now,
                                     store.open("CLIENT", "EXCH", account_id, now)))


def test_sequence_numbers_survive_connections_and_processes(tmp_path: Path) -> None:
    store = FixStore(tmp_path)
    first = FixSession("EXCH")
    assert [m.msg_type for m in sent(logon(first, store, 1, reset=True))] == ["A"]
    first.on_message(msg("D", 2, [(11, "c1")]), NOW)
    first.build("8", [(11, "c1"), (17, "1")], NOW)
    first.build("0", [], NOW)
    assert (first.next_in, first.next_out) == (3, 4)
    assert first.store is not None
    store.release(first.store)
    # Another process: a new FixStore over the same directory.
    again = FixSession("EXCH")
    reply = sent(logon(again, FixStore(tmp_path), 3))
    assert [(m.msg_type, m.get(34)) for m in reply] == [("A", "4")]
    assert again.state is State.ACTIVE and again.next_in == 4


def test_logon_below_the_expected_seq_is_refused_as_quickfix_does(tmp_path: Path) -> None:
    store = FixStore(tmp_path)
    first = FixSession("EXCH")
    logon(first, store, 1, reset=True)
    for seq in range(2, 6):
        first.on_message(msg("0", seq), NOW)
    assert first.store is not None
    store.release(first.store)
    again = FixSession("EXCH")
    actions = logon(again, store, 1)
    (logout,) = sent(actions)
    assert logout.msg_type == "5"
    assert logout.get(58) == "MsgSeqNum too low, expecting 6 but received 1"
    assert isinstance(actions[-1], Disconnect)


def test_resend_replays_application_messages_and_gap_fills_the_rest(tmp_path: Path) -> None:
    store = FixStore(tmp_path)
    session = FixSession("EXCH")
    logon(session, store, 1, reset=True)  # our seq 1: Logon
    first_sent = session.build("8", [(11, "c1"), (17, "11")], NOW)  # 2
    session.build("0", [], NOW + 1)  # 3: heartbeat
    session.build("1", [(112, "T")], NOW + 2)  # 4: test request
    session.build("8", [(11, "c1"), (17, "12")], NOW + 3)  # 5
    session.build("9", [(11, "c2"), (41, "c1")], NOW + 4)  # 6
    assert session.store is not None
    store.release(session.store)
    again = FixSession("EXCH")
    logon(again, FixStore(tmp_path), 2)  # our seq 7
    resent = sent(again.on_message(msg("2", 3, [(7, "1"), (16, "0")]), NOW + 60))
    got = [(m.msg_type, m.get(34), m.get(43), m.get(36), m.get(17)) for m in resent]
    assert got == [
        ("4", "1", "Y", "2", None),  # the Logon: gap-filled
        ("8", "2", "Y", None, "11"),
        ("4", "3", "Y", "5", None),  # heartbeat + test request: one gap fill
        ("8", "5", "Y", None, "12"),
        ("9", "6", "Y", None, None),
        ("4", "7", "Y", "8", None),  # the new Logon
    ]
    replayed = resent[1]
    assert replayed.get(122) == "20260528-20:26:40.000"  # OrigSendingTime: first sent
    assert replayed.get(52) != replayed.get(122)
    assert [f for f in replayed.fields if f[0] in (11, 17)] == [(11, "c1"), (17, "11")]
    assert b"43=Y" not in first_sent
    assert all(m.get(123) == "Y" for m in resent if m.msg_type == "4")
    assert (again.resent, again.gap_filled) == (3, 4)
    # A bounded range: only what was asked.
    (only,) = sent(again.on_message(msg("2", 4, [(7, "5"), (16, "5")]), NOW + 61))
    assert (only.msg_type, only.get(34)) == ("8", "5")


def test_store_is_bounded_and_compacts(tmp_path: Path) -> None:
    store = FixStore(tmp_path, max_messages=3)
    session = FixSession("EXCH")
    logon(session, store, 1, reset=True)
    for i in range(10):
        session.build("8", [(17, str(i))], NOW)  # seqs 2..11
    assert session.store is not None
    assert len(session.store) == 3 and store.messages_kept() == 3
    body = (session.store.path / "body").read_bytes()
    assert body.count(b"\n") <= 7  # compacted: at most 2 x 3 records and the new one
    resent = sent(session.on_message(msg("2", 2, [(7, "2"), (16, "0")]), NOW))
    assert [(m.msg_type, m.get(34), m.get(36)) for m in resent] == [
        ("4", "2", "9"), ("8", "9", None), ("8", "10", None), ("8", "11", None)]


def test_one_connection_per_session_and_one_account(tmp_path: Path) -> None:
    store = FixStore(tmp_path)
    held = store.open("CLIENT", "EXCH", 7, NOW)
    with pytest.raises(SessionBusy):
        FixStore(tmp_path).open("CLIENT", "EXCH", 7, NOW)
    store.release(held)
    with pytest.raises(SessionOwned):
        store.open("CLIENT", "EXCH", 8, NOW)
    store.release(store.open("CLIENT", "EXCH", 7, NOW))
    # Comp ids are the client's text: they cannot reach outside the store's directory.
    odd = store.open("../x/..", "EXCH", 9, NOW)
    assert odd.path.parent == tmp_path
    store.release(odd)


def test_daily_reset_starts_the_session_again(tmp_path: Path) -> None:
    store = FixStore(tmp_path, reset_at=datetime.time(21, 0))
    session = FixSession("EXCH")
    logon(session, store, 1, reset=True, now=NOW)  # 20:26 UTC
    session.on_message(msg("0", 2), NOW)
    session.build("8", [(17, "1")], NOW)
    assert session.store is not None
    store.release(session.store)
    # Before 21:00 the numbers continue...
    before = FixSession("EXCH")
    logon(before, store, 3, now=NOW + 600)
    assert before.next_out == 4 and before.store is not None
    store.release(before.store)
    # ...after it the session starts from 1, with nothing stored.
    after = FixSession("EXCH")
    reply = sent(logon(after, store, 1, now=NOW + 3600))
    assert [(m.msg_type, m.get(34)) for m in reply] == [("A", "1")]
    assert after.store is not None and len(after.store) == 0
    assert store.last_reset(NOW + 3600) == int(NOW) + 2000  # 21:00:00 that day
