"""FIX 4.4 tag=value framing: parse a byte stream into messages, and build messages.

A message is `8=FIX.4.4|9=<len>|35=<type>|...|10=<sum>|` with SOH (0x01) separators. BodyLength
counts the bytes after the `9=` field up to and including the SOH before `10=`; CheckSum is the
byte sum of everything before `10=` modulo 256, as three digits. A message with a bad
BodyLength or CheckSum is garbled: the session layer ignores it (QuickFIX behaviour).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

SOH = b"\x01"
BEGIN_STRING = b"FIX.4.4"
_PREFIX = b"8=FIX.4.4\x019="
# A FIX message far larger than any order message is an attack or a bug: bounded buffering.
MAX_MESSAGE_BYTES = 64 * 1024


class GarbledMessage(ValueError):
    """Bytes that look like a FIX message but fail BodyLength/CheckSum or field syntax."""


@dataclass(slots=True)
class FixMessage:
    """Fields in wire order; repeated tags are kept (first wins in `get`)."""

    fields: list[tuple[int, str]] = field(default_factory=list)

    @property
    def msg_type(self) -> str:
        return self.get(35) or ""

    def get(self, tag: int) -> str | None:
        for t, v in self.fields:
            if t == tag:
                return v
        return None

    def get_int(self, tag: int) -> int | None:
        value = self.get(tag)
        if value is None or not value.isdigit():
            return None
        return int(value)

    def has(self, tag: int) -> bool:
        return any(t == tag for t, _ in self.fields)


def checksum(data: bytes) -> int:
    return sum(data) % 256


def encode(msg_type: str, header: list[tuple[int, str]], body: list[tuple[int, str]]) -> bytes:
    """Serialise one message: 35 then `header` (49, 56, 34, 52...) then `body`."""
    parts = [f"35={msg_type}".encode()]
    for tag, value in header:
        parts.append(f"{tag}={value}".encode())
    for tag, value in body:
        if SOH in value.encode():
            raise ValueError(f"tag {tag}: value contains SOH")
        parts.append(f"{tag}={value}".encode())
    payload = SOH.join(parts) + SOH
    head = b"8=" + BEGIN_STRING + SOH + b"9=" + str(len(payload)).encode() + SOH
    raw = head + payload
    return raw + b"10=" + f"{checksum(raw):03d}".encode() + SOH


def _parse_fields(raw: bytes) -> list[tuple[int, str]]:
    fields: list[tuple[int, str]] = []
    for part in raw.split(SOH):
        if not part:
            continue
        tag, sep, value = part.partition(b"=")
        if not sep or not tag.isdigit():
            raise GarbledMessage(f"bad field {part[:20]!r}")
        fields.append((int(tag), value.decode("latin-1")))
    return fields


class FixStreamParser:
    """Incremental parser: feed bytes, iterate complete messages.

    Garbled messages are reported through `garbled` (a count) and skipped: the stream
    resynchronises at the next `8=FIX.4.4`.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self.garbled = 0

    def feed(self, data: bytes) -> Iterator[FixMessage]:
        self._buffer += data
        while True:
            msg = self._next()
            if msg is None:
                if len(self._buffer) > self._max:
                    # No complete message within the bound: drop what we have.
                    self.garbled += 1
                    self._buffer.clear()
                return
            if isinstance(msg, FixMessage):
                yield msg

    def _skip_to_next_start(self, start_from: int) -> None:
        nxt = self._buffer.find(_PREFIX, start_from)
        if nxt < 0:
            # Keep a tail that might be the beginning of the next prefix.
            del self._buffer[: max(0, len(self._buffer) - len(_PREFIX))]
        else:
            del self._buffer[:nxt]

    def _next(self) -> FixMessage | bool | None:
        """A message; True after skipping garbage (call again); None when more bytes are needed."""
        start = self._buffer.find(_PREFIX)
        if start < 0:
            self._skip_to_next_start(0)
            return None
        if start:
            del self._buffer[:start]
        len_start = len(_PREFIX)
        len_end = self._buffer.find(SOH, len_start)
        if len_end < 0:
            return None
        length_text = bytes(self._buffer[len_start:len_end])
        if not length_text.isdigit() or len(length_text) > 7:
            self.garbled += 1
            self._skip_to_next_start(1)
            return True
        body_len = int(length_text)
        body_start = len_end + 1
        trailer_start = body_start + body_len
        # Trailer is exactly "10=NNN\x01".
        end = trailer_start + 7
        if end > self._max:
            self.garbled += 1
            self._skip_to_next_start(1)
            return True
        if len(self._buffer) < end:
            # A wrong (too long) BodyLength would otherwise stall the stream until the bound:
            # when a complete trailer followed by the next message's start is already here,
            # this message cannot be right.
            nxt = self._buffer.find(b"\x0110=", body_start)
            if nxt >= 0 and self._buffer.find(_PREFIX, nxt) == nxt + 8:
                self.garbled += 1
                self._skip_to_next_start(1)
                return True
            return None
        raw = bytes(self._buffer[:end])
        trailer = raw[trailer_start:]
        ok = (
            trailer[:3] == b"10="
            and trailer[6:7] == SOH
            and trailer[3:6].isdigit()
            and int(trailer[3:6]) == checksum(raw[:trailer_start])
            and raw[trailer_start - 1 : trailer_start] == SOH
        )
        if not ok:
            self.garbled += 1
            self._skip_to_next_start(1)
            return True
        del self._buffer[:end]
        try:
            fields = _parse_fields(raw[body_start:trailer_start])
        except GarbledMessage:
            self.garbled += 1
            return True
        if not fields or fields[0][0] != 35:
            self.garbled += 1
            return True
        return FixMessage(fields=fields)
