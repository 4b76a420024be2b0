"""Framing of the gateway <-> matcher link: 4-byte big-endian length + one msgpack LinkMessage.

Both ends split received chunks with `FrameSplitter` (asyncio Protocols) or read one frame
with `read_frame` (StreamReaders). Frames are bounded by MAX_FRAME_BYTES: a longer one is a
protocol error that closes the link. Encoders and decoders are module-level and reused
(msgspec guidance).

The matcher decodes inbound frames with `decode_inbound`, whose Submit variant keeps the command
as raw msgpack bytes (`RawSubmit`): the journal stores exactly the bytes the gateway sent, so a
command is never re-encoded on the hot path.
"""

from __future__ import annotations

import asyncio
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
    "append_frame",
    "decode_command",
    "decode_inbound",
    "decode_message",
    "encode_command",
    "encode_frame",
    "parse_address",
    "read_frame",
]

_LEN = struct.Struct(">I")
_BIG_FRAME = 64 * 1024  # incomplete frames above this are collected in pieces, joined once


class FrameError(ValueError):
    """The peer broke the framing or sent something that does not decode: close the link."""


class FrameTooLarge(FrameError):
    pass


class MalformedFrame(FrameError):
    pass


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
    _ENCODER.encode_into(msg, buf, start + 4)
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
    """Frames out of received `bytes` chunks without copying each frame.

    `feed(data)` returns memoryviews of the complete frames (valid as long as the caller keeps
    them; they pin their chunk, not this object). An incomplete tail is kept; a big incomplete
    frame is collected in pieces and joined once, so a large frame costs O(size) copies.
    """

    __slots__ = ("_buf", "_chunk_bytes", "_chunks", "_max", "_need")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = b""
        self._chunks: list[bytes] = []
        self._chunk_bytes = 0
        self._need = 0
        self._max = max_frame

    def feed(self, data: bytes) -> list[memoryview]:
        if self._chunks:
            self._chunks.append(data)
            self._chunk_bytes += len(data)
            if self._chunk_bytes < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks = []
        elif self._buf:
            data = self._buf + data
        frames: list[memoryview] = []
        total = len(data)
        off = 0
        view = memoryview(data)
        unpack = _LEN.unpack_from
        while total - off >= 4:
            size = unpack(data, off)[0]
            if size > self._max:
                raise FrameTooLarge(f"frame of {size} bytes exceeds the bound of {self._max}")
            if size == 0:
                raise MalformedFrame("empty frame")
            end = off + 4 + size
            if end > total:
                if size > _BIG_FRAME:
                    self._chunks = [data[off:]]
                    self._chunk_bytes = total - off
                    self._need = 4 + size
                    off = total
                break
            frames.append(view[off + 4 : end])
            off = end
        self._buf = data[off:] if off < total else b""
        return frames


async def read_frame(reader: asyncio.StreamReader, max_frame: int = MAX_FRAME_BYTES) -> bytes:
    """One frame body from a stream; raises IncompleteReadError at EOF, FrameError if bad."""
    head = await reader.readexactly(4)
    size = _LEN.unpack(head)[0]
    if size > max_frame:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the bound of {max_frame}")
    if size == 0:
        raise MalformedFrame("empty frame")
    return await reader.readexactly(size)


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
