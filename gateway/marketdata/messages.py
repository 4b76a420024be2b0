"""Subscriber-facing /ws/md messages (docs/PROTOCOL.md) and their WebSocket framing.

Each outgoing message is encoded to JSON once and framed once; the same bytes are then
written to every subscriber that shares the view (`frame`).
"""

from __future__ import annotations

import struct
from typing import Final, Literal

import msgspec

from gateway.frames import text_frame

Level = tuple[str, str]


class BookOut(msgspec.Struct, frozen=True, kw_only=True):
    channel: Literal["book"] = "book"
    type: Literal["snapshot", "update"]
    symbol: str
    ts: int
    seq: int
    prev_seq: int | None
    bids: list[Level]
    asks: list[Level]
    checksum: int


class TradeOut(msgspec.Struct, frozen=True, kw_only=True):
    channel: Literal["trades"] = "trades"
    symbol: str
    ts: int
    trade_id: int
    price: str
    qty: str
    taker_side: str


class TickerOut(msgspec.Struct, frozen=True, kw_only=True):
    channel: Literal["ticker"] = "ticker"
    symbol: str
    ts: int
    best_bid: str | None
    best_bid_qty: str | None
    best_ask: str | None
    best_ask_qty: str | None
    last: str | None
    volume_24h: str
    # The price band orders must be priced in: around the last trade, or the instrument's
    # reference price before the first one.
    reference_price: str
    band_low: str
    band_high: str
    halted: bool


class CandleOut(msgspec.Struct, frozen=True, kw_only=True):
    """The open candle of one interval, sent whenever a trade changed it."""

    channel: Literal["candles"] = "candles"
    symbol: str
    ts: int
    interval: str
    start: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int


class HeartbeatOut(msgspec.Struct, frozen=True, kw_only=True):
    channel: Literal["heartbeat"] = "heartbeat"
    symbol: str
    ts: int
    seq: int
    last_trade_id: int


class SubscriptionInfo(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    channels: list[str]
    depth: int
    interval_ms: int


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: int
    msg: str
    retry_after_ms: int | None = None


class StatusOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """channel "status": resync_required, slow_consumer, and the answers to requests."""

    channel: Literal["status"]  # no default: omit_defaults would drop it
    type: Literal["resync_required", "slow_consumer", "subscribed", "unsubscribed", "error"]
    symbol: str | None
    ts: int
    id: int | str | None = None
    subscriptions: list[SubscriptionInfo] | None = None
    symbols: list[str] | None = None
    error: ErrorInfo | None = None


OutMessage = BookOut | TradeOut | TickerOut | CandleOut | HeartbeatOut | StatusOut


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A subscriber request: {"method": ..., "params": {...}, "id"?: ...}."""

    method: str
    params: dict[str, object] = {}
    id: int | str | None = None


_encoder: Final = msgspec.json.Encoder()
request_decoder: Final = msgspec.json.Decoder(Request)

def close_frame(code: int, reason: str = "") -> bytes:
    body = struct.pack("!H", code) + reason.encode()[:120]
    return bytes((0x88, len(body))) + body


def encode(message: OutMessage) -> bytes:
    """JSON text of one message, framed: ready to write to any number of sockets."""
    return text_frame(_encoder.encode(message))
