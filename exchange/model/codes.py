"""Result codes shared by the engine, the gateway and the wire (docs/PROTOCOL.md).

Business outcomes are result codes, not exceptions: the engine answers a bad command with
one of these and changes nothing.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    OK = 0
    MALFORMED = 1001
    INVALID_VALUE = 1002
    UNKNOWN_SYMBOL = 1003
    TOO_LARGE = 1004
    NOT_LOGGED_ON = 2001
    BAD_CREDENTIALS = 2002
    NO_PERMISSION = 2003
    INSUFFICIENT_BALANCE = 3001
    PRICE_OUTSIDE_BAND = 3002
    POST_ONLY_WOULD_TAKE = 3003
    DUPLICATE_CLIENT_ORDER_ID = 3004
    UNKNOWN_ORDER = 3005
    NO_FILL = 3006
    RATE_LIMITED = 4001
    OVERLOADED = 4002
    TIMEOUT = 5001
    INTERNAL = 5002
    # Codes below are engine/operator outcomes that only operators see (docs/PROTOCOL.md,
    # Error codes); trading clients get one of the codes above instead.
    SYMBOL_HALTED = 3007
    UNKNOWN_ACCOUNT = 3008
    DUPLICATE_API_KEY = 3009
    UNKNOWN_API_KEY = 3010
    ALREADY_LISTED = 3011


STATUS_OF: dict[Code, int] = {
    Code.OK: 200,
    Code.MALFORMED: 400,
    Code.INVALID_VALUE: 400,
    Code.UNKNOWN_SYMBOL: 400,
    Code.TOO_LARGE: 413,
    Code.NOT_LOGGED_ON: 401,
    Code.BAD_CREDENTIALS: 401,
    Code.NO_PERMISSION: 403,
    Code.INSUFFICIENT_BALANCE: 400,
    Code.PRICE_OUTSIDE_BAND: 400,
    Code.POST_ONLY_WOULD_TAKE: 400,
    Code.DUPLICATE_CLIENT_ORDER_ID: 409,
    Code.UNKNOWN_ORDER: 404,
    Code.NO_FILL: 400,
    Code.RATE_LIMITED: 429,
    Code.OVERLOADED: 503,
    Code.TIMEOUT: 504,
    Code.INTERNAL: 500,
    Code.SYMBOL_HALTED: 503,
    Code.UNKNOWN_ACCOUNT: 404,
    Code.DUPLICATE_API_KEY: 409,
    Code.UNKNOWN_API_KEY: 404,
    Code.ALREADY_LISTED: 409,
}


MESSAGES: dict[Code, str] = {
    Code.OK: "ok",
    Code.MALFORMED: "malformed message",
    Code.INVALID_VALUE: "invalid field value",
    Code.UNKNOWN_SYMBOL: "unknown symbol",
    Code.TOO_LARGE: "message too large",
    Code.NOT_LOGGED_ON: "not logged on",
    Code.BAD_CREDENTIALS: "logon rejected",
    Code.NO_PERMISSION: "key lacks permission",
    Code.INSUFFICIENT_BALANCE: "insufficient balance",
    Code.PRICE_OUTSIDE_BAND: "price outside the band",
    Code.POST_ONLY_WOULD_TAKE: "post-only order would take liquidity",
    Code.DUPLICATE_CLIENT_ORDER_ID: "duplicate client_order_id",
    Code.UNKNOWN_ORDER: "unknown order",
    Code.NO_FILL: "order could not be filled",
    Code.RATE_LIMITED: "rate limited",
    Code.OVERLOADED: "overloaded",
    Code.TIMEOUT: "timeout: outcome unknown",
    Code.INTERNAL: "internal error",
    Code.SYMBOL_HALTED: "symbol halted",
    Code.UNKNOWN_ACCOUNT: "unknown account",
    Code.DUPLICATE_API_KEY: "duplicate api key",
    Code.UNKNOWN_API_KEY: "unknown api key",
    Code.ALREADY_LISTED: "already listed",
}
