"""Framing of the gateway <-> matcher link: 4-byte big-endian length + one msgpack LinkMessage.

Both ends write frames with `append_frame` and split what they receive with `FrameSplitter`.
Frames are bounded by MAX_FRAME_BYTES: a longer one is a protocol error that closes the link.
Encoders and decoders are module-level and reused (msgspec guidance).

The matcher decodes inbound frames with `decode_inbound`, whose Submit variant keeps the command
as raw msgpack bytes (`RawSubmit`): the journal stores exactly the bytes the gateway sent, so a
command is never re-encoded on the hot path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

import msgspec

from exchange.link.messages import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ask,
    Heartbeat,
    Hello,
    Interest,
    LinkMessage,
    MdSubscribe,
    MdUnsubscribe,
    SessionClosed,
    SessionOpened,
)
from exchange.model.commands import Command

__all__ = [
    "COMMAND_DECODER",
    "INBOUND_DECODER",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "Address",
    "FrameError",
    "FrameSplitter",
    "FrameTooLarge",
    "InboundMessage",
    "MalformedFrame",
    "RawSubmit",
    "Unencodable",
    "append_frame",
    "decode_command",
    "decode_inbound",
    "decode_message",
    "encode_command",
    "encode_frame",
    "parse_address",
]

_LEN = struct.Struct(">I")
_BIG_FRAME = 64 * 1024  # incomplete frames above this are collected in pieces, joined once
_EMPTY_VIEW = memoryview(b"")


class FrameError(ValueError):
    """The peer broke the framing or sent something that does not decode: close the link."""


class FrameTooLarge(FrameError):
    pass


class MalformedFrame(FrameError):
    pass


class Unencodable(FrameError):
    """A message that msgpack cannot carry (an integer outside 64 bits): nothing was written.

    The edges range-check every number first; this keeps a bug there from corrupting the
    outgoing buffer, which would end the link for every request sharing it.
    """


class RawSubmit(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="t",
    tag="submit",
):
    """Wire-identical to `link_messages.Submit`, with the command left undecoded."""

    req_id: int
    command: msgspec.Raw


# What a gateway may send to the matcher. Anything else (a Welcome, a Result...) is malformed.
InboundMessage = (
    Hello
    | Heartbeat
    | RawSubmit
    | Ask
    | Interest
    | SessionOpened
    | SessionClosed
    | MdSubscribe
    | MdUnsubscribe
)

_ENCODER = msgspec.msgpack.Encoder()
_MESSAGE_DECODER: msgspec.msgpack.Decoder[LinkMessage] = msgspec.msgpack.Decoder(LinkMessage)
_INBOUND_DECODER: msgspec.msgpack.Decoder[InboundMessage] = msgspec.msgpack.Decoder(InboundMessage)
_COMMAND_DECODER: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)


def append_frame(buf: bytearray, msg: object) -> None:
    """Append one length-prefixed frame of `msg` to `buf` (no intermediate bytes object)."""
    start = len(buf)
    buf += b"\0\0\0\0"
    try:
        _ENCODER.encode_into(msg, buf, start + 4)
    except (OverflowError, TypeError, msgspec.EncodeError) as exc:
        del buf[start:]
        raise Unencodable(f"cannot encode {type(msg).__name__}: {exc}") from exc
    size = len(buf) - start - 4
    if size > MAX_FRAME_BYTES:
        del buf[start:]
        raise FrameTooLarge(f"frame of {size} bytes exceeds MAX_FRAME_BYTES={MAX_FRAME_BYTES}")
    _LEN.pack_into(buf, start, size)


# For hot loops that catch msgspec.DecodeError themselves (no wrapper call per frame).
INBOUND_DECODER = _INBOUND_DECODER
COMMAND_DECODER = _COMMAND_DECODER


def encode_frame(msg: object) -> bytes:
    buf = bytearray()
    append_frame(buf, msg)
    return bytes(buf)


def encode_command(command: Command) -> bytes:
    return _ENCODER.encode(command)


def decode_message(data: bytes | memoryview) -> LinkMessage:
    try:
        return _MESSAGE_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedFrame(str(exc)) from exc


def decode_inbound(data: bytes | memoryview) -> InboundMessage:
    try:
        return _INBOUND_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedFrame(str(exc)) from exc


def decode_command(data: bytes | msgspec.Raw) -> Command:
    try:
        return _COMMAND_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedFrame(f"bad command: {exc}") from exc


class FrameSplitter:
    """The one frame splitter of the link, used by both ends.

    `push(data)` takes a received chunk; `pop()` returns the next complete frame body or None.
    A reader that may stop part-way (the matcher, when its command queue is full) pops one
    frame at a time and leaves the rest buffered; `ready()` says whether a complete frame is
    waiting. `feed(data)` pushes and pops everything (the gateway's end).

    Frames are memoryviews of the received bytes, not copies (they pin their chunk, not this
    object). An incomplete tail is kept; a big incomplete frame is collected in pieces and
    joined once, so a large frame costs O(size) copies however it is chunked. A length over
    `max_frame`, or zero, raises a FrameError: the link is then closed.
    """

    __slots__ = ("_buf", "_chunk_bytes", "_chunks", "_max", "_need", "_off", "_view")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = b""
        self._view = _EMPTY_VIEW
        self._off = 0  # start of the first frame not yet popped
        self._chunks: list[bytes] = []  # pieces of a big incomplete frame
        self._chunk_bytes = 0
        self._need = 0  # bytes the big frame needs, header included
        self._max = max_frame

    def push(self, data: bytes) -> None:
        if self._chunks:
            self._chunks.append(data)
            self._chunk_bytes += len(data)
            if self._chunk_bytes < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = []
        elif self._off < len(self._buf):
            data = self._buf[self._off :] + data
        self._buf = data
        self._view = memoryview(data)
        self._off = 0

    def pop(self) -> memoryview | None:
        buf = self._buf
        off = self._off
        total = len(buf)
        if total - off < 4:
            return None
        size = _LEN.unpack_from(buf, off)[0]
        end = off + 4 + size
        if end > total or size > self._max or size == 0:
            self._incomplete(size)
            return None
        frame = self._view[off + 4 : end]
        if end == total:  # all taken: hold no reference to the chunk
            self._buf = b""
            self._view = _EMPTY_VIEW
            self._off = 0
        else:
            self._off = end
        return frame

    def ready(self) -> bool:
        """A complete frame is buffered (what `pop` would return, without taking it)."""
        buf = self._buf
        off = self._off
        if len(buf) - off < 4:
            return False
        size = _LEN.unpack_from(buf, off)[0]
        if off + 4 + size > len(buf) or size > self._max or size == 0:
            self._incomplete(size)
            return False
        return True

    def feed(self, data: bytes) -> list[memoryview]:
        """Push `data` and pop every complete frame."""
        self.push(data)
        frames: list[memoryview] = []
        pop = self.pop
        while (frame := pop()) is not None:
            frames.append(frame)
        return frames

    def _incomplete(self, size: int) -> None:
        """The frame at the read position is bad, or not all here yet."""
        if size > self._max:
            raise FrameTooLarge(f"frame of {size} bytes exceeds the bound of {self._max}")
        if size == 0:
            raise MalformedFrame("empty frame")
        if size > _BIG_FRAME:
            # Collect the rest in pieces and join once, instead of re-joining every chunk.
            self._chunks = [self._buf[self._off :]]
            self._chunk_bytes = len(self._chunks[0])
            self._need = 4 + size
            self._buf = b""
            self._view = _EMPTY_VIEW
            self._off = 0


@dataclass(frozen=True, slots=True)
class Address:
    """A link address: `unix:/path/to/socket` or `tcp:host:port`."""

    kind: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    kind, sep, rest = text.partition(":")
    if sep and kind == "unix" and rest:
        return Address(kind="unix", path=rest)
    if sep and kind == "tcp":
        host, colon, port = rest.rpartition(":")
        if colon and host and port.isdigit() and 0 <= int(port) < 65536:
            return Address(kind="tcp", host=host.strip("[]"), port=int(port))
    raise ValueError(f"bad link address {text!r}: expected unix:/path or tcp:host:port")
