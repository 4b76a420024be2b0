"""The few docs/PROTOCOL.md messages the load generator sends and reads, as msgspec structs.

One reused encoder/decoder per message shape: decoding only the fields we need is what
keeps a generator process cheap enough not to become the bottleneck it is measuring.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec

# gc=False: these are decoded for every message and hold only strings and numbers (no
# cycles), so the cyclic garbage collector need not track them.


class ErrorBody(msgspec.Struct, frozen=True, gc=False):
    code: int = 0
    msg: str = ""
    retry_after_ms: int | None = None


class Result(msgspec.Struct, frozen=True, gc=False):
    """A response's `result`: only the order status is read (other fields are skipped)."""

    status: str | None = None


class Inbound(msgspec.Struct, frozen=True, gc=False):
    """Anything on /ws/trade: a response (has `id`) or a pushed execution report (`type`).

    Only the fields the session reads; msgspec skips the others (the full order state in
    a result, prices, fees, `rate_limits`) without building them."""

    id: int | str | None = None
    status: int | None = None
    result: Result | None = None
    error: ErrorBody | None = None
    type: str | None = None
    seq: int | None = None
    order_id: str | int | None = None
    client_order_id: str | None = None
    exec_type: str | None = None
    ord_status: str | None = None
    ts: int | None = None


class BookMessage(msgspec.Struct, frozen=True, gc=False):
    """Anything on /ws/md; only the fields the probe checks."""

    channel: str | None = None
    type: str | None = None
    symbol: str | None = None
    ts: int | None = None
    seq: int | None = None
    prev_seq: int | None = None
    bids: list[tuple[str, str]] | None = None
    asks: list[tuple[str, str]] | None = None
    checksum: int | None = None
    trade_id: int | None = None


encoder = msgspec.json.Encoder()
inbound_decoder = msgspec.json.Decoder(Inbound)
md_decoder = msgspec.json.Decoder(BookMessage)


def request(req_id: int, method: str, params: dict[str, Any]) -> bytes:
    return encoder.encode({"id": req_id, "method": method, "params": params})


def logon_signature(secret: str, timestamp_ms: int, nonce: str, api_key: str) -> str:
    payload = f"{timestamp_ms}\n{nonce}\nlogon\n{api_key}".encode()
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def logon_params(api_key: str, secret: str, timestamp_ms: int, nonce: str) -> dict[str, Any]:
    return {
        "api_key": api_key,
        "timestamp": timestamp_ms,
        "nonce": nonce,
        "signature": logon_signature(secret, timestamp_ms, nonce, api_key),
    }
