"""Where FIX sessions keep what outlives a connection: sequence numbers and sent messages.

A session is (SenderCompID, TargetCompID) as QuickFIX names it. Its directory under the
store's root holds:

- `seqnums`: one fixed-width line `next_in next_out last_account_seq account_id created`,
  rewritten in place whenever a number moves (a `pwrite`, like QuickFIX's FileStore).
  `last_account_seq` is the newest account report the session has sent; `account_id` binds
  the session to the account that created it (another account's key cannot log on as it).
- `body`: the application messages sent, appended as `seq length sending_time type\\n` then
  the body fields; read back for a ResendRequest. Session-level messages are not stored:
  they are gap-filled, as QuickFIX does.
- `aliases`: the session's replaced open orders, order id -> [newest ClOrdID, the one
  before], so that a ClOrdID given in a replace still names the order after a reconnect
  (rewritten whole, by rename, when it changes: only on replaces and their orders' end).
- `lock`: `flock`ed while a connection holds the session, so that two gateways sharing the
  directory never run the same session at once (the second Logon is refused).

Bounds: `max_messages` per session are kept (older ones are gap-filled on a resend); the body
file is compacted when it holds twice that. Daily reset: with `reset_at` (UTC time of day) a
session opened after the latest such time, but created before it, starts again from 1 with
nothing stored, as QuickFIX's StartTime does.

Durability: writes go to the page cache without fsync (QuickFIX's default). A host crash can
lose the tail; the reports themselves are not lost, since `last_account_seq` lags with them
and the session sends them again after a reconnect (same ExecIDs, new MsgSeqNums).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_MESSAGES = 10_000
_SEQNUMS_FORMAT = "{:012d} {:012d} {:015d} {:012d} {:012d}\n"
_SEQNUMS_SIZE = len(_SEQNUMS_FORMAT.format(0, 0, 0, 0, 0))
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SessionBusy(Exception):
    """The session is held by another connection (on this gateway or another one)."""


class SessionOwned(Exception):
    """The session belongs to another account."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    sending_time: str  # SendingTime(52) as first sent: OrigSendingTime(122) on a resend
    msg_type: str
    body: list[tuple[int, str]]


def _dir_name(sender: str, target: str) -> str:
    # Comp ids are client-chosen: keep the name safe, and unique by escaping what changes.
    def safe(text: str) -> str:
        return _SAFE.sub(lambda m: f"%{ord(m.group()):02x}", text)

    return f"{safe(sender)}-{safe(target)}"


def _encode_body(body: list[tuple[int, str]]) -> bytes:
    return b"".join(f"{tag}={value}\x01".encode() for tag, value in body)


def _decode_body(data: bytes) -> list[tuple[int, str]]:
    fields: list[tuple[int, str]] = []
    for part in data.split(b"\x01"):
        if part:
            tag, _, value = part.partition(b"=")
            fields.append((int(tag), value.decode()))
    return fields


class SessionStore:
    """One session's numbers and messages, held open (and locked) by one connection."""

    def __init__(self, path: Path, max_messages: int) -> None:
        self.path = path
        self.max_messages = max_messages
        path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SessionBusy(str(path)) from None
        self.next_in = 1
        self.next_out = 1
        self.last_account_seq = 0
        self.account_id = 0
        self.created = 0  # epoch seconds
        self.fresh = False  # created by this open: nothing was ever sent on it
        self._seq_fd = os.open(path / "seqnums", os.O_RDWR | os.O_CREAT, 0o600)
        raw = os.pread(self._seq_fd, _SEQNUMS_SIZE, 0)
        if len(raw) == _SEQNUMS_SIZE:
            values = [int(v) for v in raw.split()]
            (self.next_in, self.next_out, self.last_account_seq, self.account_id,
             self.created) = values
        # seq -> (offset of the body bytes, their length, sending time, type)
        self._index: dict[int, tuple[int, int, str, str]] = {}
        self.aliases: dict[int, tuple[str, str]] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            raw_aliases = json.loads((path / "aliases").read_text())
            self.aliases = {int(k): (str(v[0]), str(v[1])) for k, v in raw_aliases.items()}
        self._body_path = path / "body"
        self._body = open(self._body_path, "ab+")  # noqa: SIM115 - held for the session
        self._records = 0  # records in the file, live or not
        self._load_index()

    # ---- numbers ---------------------------------------------------------------------------

    def save_numbers(self) -> None:
        line = _SEQNUMS_FORMAT.format(self.next_in, self.next_out, self.last_account_seq,
                                      self.account_id, self.created)
        os.pwrite(self._seq_fd, line.encode(), 0)

    def save_aliases(self) -> None:
        tmp = self.path / "aliases.tmp"
        tmp.write_text(json.dumps({str(k): list(v) for k, v in self.aliases.items()}))
        os.replace(tmp, self.path / "aliases")

    def reset(self, now_s: int) -> None:
        """Both sequence numbers back to 1, nothing stored (141=Y or the daily reset)."""
        self.next_in = 1
        self.next_out = 1
        self.created = now_s
        self._index.clear()
        self._body.truncate(0)
        self._records = 0
        self.save_numbers()

    # ---- messages --------------------------------------------------------------------------

    def _load_index(self) -> None:
        self._body.seek(0)
        data = self._body.read()
        offset = 0
        while offset < len(data):
            end = data.find(b"\n", offset)
            if end < 0:
                break
            try:
                seq_text, length_text, sending, msg_type = data[offset:end].decode().split(" ")
                seq, length = int(seq_text), int(length_text)
            except ValueError:
                break  # a torn record at the tail: what follows it is unusable
            start = end + 1
            if start + length > len(data):
                break
            self._index[seq] = (start, length, sending, msg_type)
            self._records += 1
            offset = start + length
        if offset < len(data):
            self._body.truncate(offset)
        self._trim()

    def save(self, seq: int, sending_time: str, msg_type: str,
             body: list[tuple[int, str]]) -> None:
        data = _encode_body(body)
        head = f"{seq} {len(data)} {sending_time} {msg_type}\n".encode()
        self._body.seek(0, os.SEEK_END)
        start = self._body.tell() + len(head)
        self._body.write(head + data)
        self._body.flush()
        self._index[seq] = (start, len(data), sending_time, msg_type)
        self._records += 1
        self._trim()

    def _trim(self) -> None:
        while len(self._index) > self.max_messages:
            del self._index[next(iter(self._index))]
        if self._records > 2 * self.max_messages:
            self._compact()

    def _compact(self) -> None:
        kept = [(seq, self._read(seq)) for seq in self._index]
        tmp = self.path / "body.tmp"
        with open(tmp, "wb") as out:
            for seq, message in kept:
                data = _encode_body(message.body)
                out.write(f"{seq} {len(data)} {message.sending_time} {message.msg_type}\n"
                          .encode() + data)
        os.replace(tmp, self._body_path)
        self._body.close()
        self._body = open(self._body_path, "ab+")  # noqa: SIM115
        self._index.clear()
        self._records = 0
        self._load_index()

    def _read(self, seq: int) -> StoredMessage:
        start, length, sending, msg_type = self._index[seq]
        self._body.seek(start)
        return StoredMessage(seq, sending, msg_type, _decode_body(self._body.read(length)))

    def stored(self, begin: int, end: int) -> list[StoredMessage]:
        """Stored messages with begin <= seq <= end, in order."""
        return [self._read(seq) for seq in range(begin, end + 1) if seq in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        self.save_numbers()
        with contextlib.suppress(OSError):
            self._body.close()
        os.close(self._seq_fd)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


class FixStore:
    """The directory of every session's store (shared by the gateways of one host)."""

    def __init__(self, root: Path, *, max_messages: int = DEFAULT_MAX_MESSAGES,
                 reset_at: datetime.time | None = None) -> None:
        if max_messages < 1:
            raise ValueError("a FIX session keeps at least one message")
        self.root = root
        self.max_messages = max_messages
        self.reset_at = reset_at
        self.open_sessions: set[SessionStore] = set()
        root.mkdir(parents=True, exist_ok=True)

    def open(self, sender: str, target: str, account_id: int, now_s: float) -> SessionStore:
        """The session's store, locked for this connection; reset if the day rolled over.

        Raises SessionBusy (held elsewhere) or SessionOwned (another account's session)."""
        store = SessionStore(self.root / _dir_name(sender, target), self.max_messages)
        if store.account_id and store.account_id != account_id:
            store.close()
            raise SessionOwned(f"{sender}-{target}")
        if not store.account_id:
            store.account_id = account_id
            store.created = int(now_s)
            store.fresh = True
            store.save_numbers()
        boundary = self.last_reset(now_s)
        if boundary is not None and store.created < boundary:
            store.reset(int(now_s))
        self.open_sessions.add(store)
        return store

    def release(self, store: SessionStore) -> None:
        self.open_sessions.discard(store)
        store.close()

    def last_reset(self, now_s: float) -> int | None:
        """The latest daily reset time at or before `now_s` (epoch seconds), if any."""
        if self.reset_at is None:
            return None
        now = datetime.datetime.fromtimestamp(now_s, datetime.UTC)
        today = datetime.datetime.combine(now.date(), self.reset_at, datetime.UTC)
        if today > now:
            today -= datetime.timedelta(days=1)
        return int(today.timestamp())

    def messages_kept(self) -> int:
        return sum(len(s) for s in self.open_sessions)
