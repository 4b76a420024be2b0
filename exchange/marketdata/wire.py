"""The internal market-data feed: one `MdBatch` per symbol per matcher batch.

This is what the matcher publishes (to Redis channel `md:<symbol>`, or as the payload of a
link `MarketData` frame) and what gateways decode. It carries integers (ticks, lots); the
gateway turns them into the canonical decimal strings of the subscriber wire (docs/PROTOCOL.md).

Sequencing, which lets a gateway see at once that it missed a batch:
- `prev_seq`/`seq`: the symbol's book_seq before and after the batch. A batch whose
  `prev_seq` differs from the book_seq the gateway holds means a lost batch (gap).
- `prev_trade_id`/`last_trade_id`: the same for the symbol's contiguous trade ids.
A batch with no book change has `prev_seq == seq` (a heartbeat, or trades only).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

CHANNEL_PREFIX: Final = "md:"


def channel_of(symbol: str) -> str:
    """The Redis pub/sub channel of a symbol's feed."""
    return CHANNEL_PREFIX + symbol


# array_like: positional msgpack arrays, smaller and faster than maps; gc=False: these hold
# only scalars and lists of scalars, no cycles, so the collector need not track them.
class BookDelta(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Absolute level totals after the batch, merged over its BookChanged events; 0 deletes."""

    bids: list[tuple[int, int]]  # (price ticks, total lots)
    asks: list[tuple[int, int]]


class TradeMsg(msgspec.Struct, frozen=True, array_like=True, gc=False):
    trade_id: int
    price: int  # ticks
    qty: int  # lots
    taker_side: Literal["buy", "sell"]
    ts: int


class TickerMsg(msgspec.Struct, frozen=True, array_like=True, gc=False):
    best_bid: int | None  # ticks; None when that side is empty
    best_bid_qty: int | None  # lots
    best_ask: int | None
    best_ask_qty: int | None
    last: int | None  # ticks of the last trade; None before the first
    volume_24h: int  # lots traded over the last 24 hours of event time
    halted: bool = False  # trading in the symbol is halted by the operator


class CandleUpdate(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The open candle of one interval after the batch's trades (absolute values)."""

    interval: str  # a key of exchange.model.candles.INTERVALS
    start: int  # ns
    open: int  # ticks
    high: int
    low: int
    close: int
    volume: int  # lots
    trades: int


class MdBatch(msgspec.Struct, frozen=True, array_like=True, gc=False):
    symbol: str
    ts: int  # the batch's engine timestamp (ns)
    prev_seq: int
    seq: int
    prev_trade_id: int
    last_trade_id: int
    book: BookDelta | None = None
    trades: list[TradeMsg] = []
    ticker: TickerMsg | None = None
    heartbeat: bool = False
    candles: list[CandleUpdate] = []  # one per interval when the batch had trades


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(MdBatch)


def encode_batch(batch: MdBatch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(payload: bytes) -> MdBatch:
    """Raises msgspec.DecodeError / ValidationError on a payload that is not an MdBatch."""
    return _decoder.decode(payload)
