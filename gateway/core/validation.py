"""Wire JSON -> engine commands and queries, every docs/PROTOCOL.md rule checked at the edge.

Anything rejected here answers with its code and never reaches the matcher. As
docs/PROTOCOL.md says: the envelope, a missing required parameter or an unknown parameter is
1001 (wrong shape); a parameter that is present with a bad type or value is 1002; an unknown
symbol is 1003.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from exchange.model.codes import Code
from exchange.model.commands import MAX_BATCH, AmendOrder, CancelAll, CancelOrder, PlaceOrder
from exchange.model.instruments import ExchangeConfig, Instrument
from exchange.model.queries import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_REPORTS_PAGE,
    GetAccountTrades,
    GetBalances,
    GetOpenOrders,
    GetOrder,
    GetOrderHistory,
    GetReports,
)
from exchange.model.sessions import CancelOnDisconnect
from gateway.json_limits import TooDeep, check_depth

RequestId = int | str | None

LOGON = "session.logon"
PING = "ping"
PLACE = "order.place"
CANCEL = "order.cancel"
AMEND = "order.amend"
STATUS = "order.status"
OPEN = "orders.open"
CANCEL_ALL = "orders.cancel_all"
BALANCES = "account.balances"
REPLAY = "executions.replay"
PLACE_BATCH = "orders.place_batch"
CANCEL_BATCH = "orders.cancel_batch"
TRADES = "account.trades"
HISTORY = "orders.history"

METHODS = frozenset({
    LOGON, PING, PLACE, CANCEL, AMEND, STATUS, OPEN, CANCEL_ALL, BALANCES, REPLAY,
    PLACE_BATCH, CANCEL_BATCH, TRADES, HISTORY,
})
TRADE_METHODS = frozenset({PLACE, CANCEL, AMEND, CANCEL_ALL, PLACE_BATCH, CANCEL_BATCH})
READ_METHODS = frozenset({STATUS, OPEN, BALANCES, REPLAY, TRADES, HISTORY})

# Integers the link carries as msgpack int64; also keeps absurd values out of the engine.
MAX_WIRE_INT = 2**53
MAX_ID_CHARS = 64
_ID_BOUND = 2**63
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,36}")
_NONCE = re.compile(r"[\x21-\x7e]{1,64}")
_API_KEY = re.compile(r"[\x21-\x7e]{1,128}")
# Lowercase hex: an HMAC-SHA256 (64) or an Ed25519 signature (128).
_SIGNATURE = re.compile(r"[0-9a-f]{64}|[0-9a-f]{128}")

_DECODER = msgspec.json.Decoder()


class RequestError(Exception):
    """A request answered with an error code; nothing was sent to the matcher."""

    def __init__(self, code: Code, msg: str | None = None, retry_after_ms: int | None = None):
        super().__init__(msg or code.name)
        self.code = code
        self.msg = msg
        self.retry_after_ms = retry_after_ms


class Request(msgspec.Struct, frozen=True):
    # A struct, not a frozen dataclass: one is built per message, and a frozen dataclass's
    # __init__ sets each field through object.__setattr__.
    id: RequestId
    method: str
    params: dict[str, Any]


class EnvelopeError(RequestError):
    """The message is not a request at all; `request_id` is echoed when it could be read."""

    def __init__(self, msg: str, request_id: RequestId = None) -> None:
        super().__init__(Code.MALFORMED, msg)
        self.request_id = request_id


def parse_request(data: str | bytes) -> Request:
    """`{"id", "method", "params"?}`; anything else raises EnvelopeError (1001)."""
    try:
        check_depth(data)
        obj = _DECODER.decode(data)
    except TooDeep as exc:
        raise EnvelopeError(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise EnvelopeError("not valid JSON") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("a request is a JSON object")
    raw_id = obj.get("id")
    request_id: RequestId = None
    # type() is int: a bool is not an id.
    if (type(raw_id) is int and -_ID_BOUND < raw_id < _ID_BOUND) or (
            type(raw_id) is str and len(raw_id) <= MAX_ID_CHARS):
        request_id = raw_id
    else:
        raise EnvelopeError("'id' must be an integer or a string of at most 64 characters")
    method = obj.get("method")
    if not isinstance(method, str):
        raise EnvelopeError("'method' must be a string", request_id)
    if method not in METHODS:
        raise EnvelopeError(f"unknown method {method[:64]!r}", request_id)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise EnvelopeError("'params' must be an object", request_id)
    # "id" and "method" are there: any other key makes the object longer than these.
    if len(obj) > 2 + ("params" in obj):
        extra = set(obj) - {"id", "method", "params"}
        raise EnvelopeError(f"unknown field(s): {', '.join(sorted(extra))[:100]}", request_id)
    return Request(id=request_id, method=method, params=params)


# ---- parameter helpers ---------------------------------------------------------------------


def _check_known(params: dict[str, Any], allowed: frozenset[str]) -> None:
    if params.keys() <= allowed:  # the usual case, without building a set
        return
    extra = set(params) - allowed
    if extra:
        names = ", ".join(sorted(extra))[:200]
        raise RequestError(Code.MALFORMED, f"unknown parameter(s): {names}")


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None:
        raise RequestError(Code.MALFORMED, f"missing parameter '{name}'")
    return value


def _choice(params: dict[str, Any], name: str, allowed: tuple[str, ...], default: object) -> str:
    value = params.get(name, default)
    if value is None:
        value = default
    if value not in allowed:
        raise RequestError(Code.INVALID_VALUE, f"'{name}' must be one of {', '.join(allowed)}")
    return str(value)


def _bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(Code.INVALID_VALUE, f"'{name}' must be true or false")
    return value


def instrument(config: ExchangeConfig, params: dict[str, Any], *, required: bool = True
               ) -> Instrument | None:
    symbol = params.get("symbol")
    if symbol is None:
        if required:
            raise RequestError(Code.MALFORMED, "missing parameter 'symbol'")
        return None
    if not isinstance(symbol, str):
        raise RequestError(Code.INVALID_VALUE, "'symbol' must be a string")
    inst = config.instruments.get(symbol)
    if inst is None:
        raise RequestError(Code.UNKNOWN_SYMBOL, f"unknown symbol {symbol[:32]!r}")
    return inst


def _qty(inst: Instrument, value: object, name: str) -> int:
    lots = inst.qty_to_lots(value)
    if lots is None:
        raise RequestError(
            Code.INVALID_VALUE,
            f"'{name}' must be a decimal string on the lot grid ({inst.lot_size})",
        )
    if not inst.min_lots <= lots <= inst.max_lots:
        raise RequestError(
            Code.INVALID_VALUE, f"'{name}' must be between {inst.min_qty} and {inst.max_qty}"
        )
    return lots


def _price(inst: Instrument, value: object, name: str) -> int:
    ticks = inst.price_to_ticks(value)
    if ticks is None or ticks >= MAX_WIRE_INT:
        raise RequestError(
            Code.INVALID_VALUE,
            f"'{name}' must be a positive decimal string on the tick grid ({inst.tick_size})",
        )
    return ticks


def client_order_id(params: dict[str, Any], *, required: bool) -> str | None:
    value = params.get("client_order_id")
    if value is None:
        if required:
            raise RequestError(Code.MALFORMED, "missing parameter 'client_order_id'")
        return None
    if not isinstance(value, str) or not _CLIENT_ORDER_ID.fullmatch(value):
        raise RequestError(
            Code.INVALID_VALUE,
            "'client_order_id' must be 1-36 characters of A-Z a-z 0-9 _ . : -",
        )
    return value


def order_id(params: dict[str, Any]) -> int | None:
    value = params.get("order_id")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < MAX_WIRE_INT:
        raise RequestError(Code.INVALID_VALUE, "'order_id' must be a positive integer")
    return value


def _order_ref(params: dict[str, Any]) -> tuple[int | None, str | None]:
    """order_id wins when both are given (Binance's rule for orderId/origClientOrderId)."""
    oid = order_id(params)
    coid = client_order_id(params, required=False)
    if oid is None and coid is None:
        raise RequestError(Code.MALFORMED, "missing parameter 'order_id' or 'client_order_id'")
    return (oid, None) if oid is not None else (None, coid)


# ---- per method ------------------------------------------------------------------------------

_PLACE_PARAMS = frozenset(
    {"symbol", "side", "type", "qty", "price", "tif", "post_only", "client_order_id", "stp",
     "stop_price", "display_qty"}
)
_REF_PARAMS = frozenset({"symbol", "order_id", "client_order_id"})
_AMEND_PARAMS = _REF_PARAMS | {"new_qty", "new_price", "new_stop_price"}
_STOP_TYPES = ("stop_market", "stop_limit")
_SYMBOL_PARAM = frozenset({"symbol"})


def place_order(config: ExchangeConfig, params: dict[str, Any], account_id: int,
                session_id: str) -> PlaceOrder:
    _check_known(params, _PLACE_PARAMS)
    inst = instrument(config, params)
    assert inst is not None
    side = _choice(params, "side", ("buy", "sell"), _required(params, "side"))
    order_type = _choice(params, "type", ("limit", "market", *_STOP_TYPES),
                         _required(params, "type"))
    coid = client_order_id(params, required=True)
    assert coid is not None
    qty = _qty(inst, _required(params, "qty"), "qty")
    tif = _choice(params, "tif", ("GTC", "IOC", "FOK"), "GTC")
    post_only = _bool(params, "post_only")
    stp = _choice(params, "stp", ("cancel_newest", "cancel_oldest", "cancel_both"),
                  "cancel_newest")
    price: int | None = None
    stop_price: int | None = None
    if order_type in _STOP_TYPES:
        stop_price = _price(inst, _required(params, "stop_price"), "stop_price")
    elif params.get("stop_price") is not None:
        raise RequestError(Code.INVALID_VALUE, "'stop_price' needs a stop order")
    display_qty = 0
    if params.get("display_qty") is not None:
        if order_type != "limit":
            raise RequestError(Code.INVALID_VALUE, "'display_qty' needs a limit order")
        display_qty = _qty(inst, params["display_qty"], "display_qty")
    if order_type in ("limit", "stop_limit"):
        price = _price(inst, _required(params, "price"), "price")
    else:
        if params.get("price") is not None:
            raise RequestError(Code.INVALID_VALUE, "a market order takes no 'price'")
        if post_only:
            raise RequestError(Code.INVALID_VALUE, "'post_only' needs a limit order")
        if "tif" not in params or params["tif"] is None:
            # A market order never rests: IOC unless the client asked FOK (docs/PROTOCOL.md).
            tif = "IOC"
        elif tif == "GTC":
            raise RequestError(Code.INVALID_VALUE, "a market order is IOC or FOK")
    if post_only and tif != "GTC":
        raise RequestError(Code.INVALID_VALUE, "'post_only' needs tif GTC")
    return PlaceOrder(
        account_id=account_id,
        symbol=inst.symbol,
        side=side,  # type: ignore[arg-type]
        order_type=order_type,  # type: ignore[arg-type]
        qty=qty,
        price=price,
        tif=tif,  # type: ignore[arg-type]
        post_only=post_only,
        client_order_id=coid,
        stp=stp,  # type: ignore[arg-type]
        session_id=session_id,
        stop_price=stop_price,
        display_qty=display_qty,
    )


def cancel_order(config: ExchangeConfig, params: dict[str, Any], account_id: int) -> CancelOrder:
    _check_known(params, _REF_PARAMS)
    inst = instrument(config, params)
    assert inst is not None
    oid, coid = _order_ref(params)
    return CancelOrder(account_id=account_id, symbol=inst.symbol, order_id=oid,
                       client_order_id=coid)


def amend_order(config: ExchangeConfig, params: dict[str, Any], account_id: int) -> AmendOrder:
    _check_known(params, _AMEND_PARAMS)
    inst = instrument(config, params)
    assert inst is not None
    oid, coid = _order_ref(params)
    raw_qty, raw_price = params.get("new_qty"), params.get("new_price")
    raw_stop = params.get("new_stop_price")
    if raw_qty is None and raw_price is None and raw_stop is None:
        raise RequestError(Code.MALFORMED,
                           "missing parameter 'new_qty', 'new_price' or 'new_stop_price'")
    new_qty = _qty(inst, raw_qty, "new_qty") if raw_qty is not None else None
    new_price = _price(inst, raw_price, "new_price") if raw_price is not None else None
    new_stop = _price(inst, raw_stop, "new_stop_price") if raw_stop is not None else None
    return AmendOrder(account_id=account_id, symbol=inst.symbol, order_id=oid,
                      client_order_id=coid, new_qty=new_qty, new_price=new_price,
                      new_stop_price=new_stop)


def order_status(config: ExchangeConfig, params: dict[str, Any], account_id: int) -> GetOrder:
    _check_known(params, _REF_PARAMS)
    inst = instrument(config, params)
    assert inst is not None
    oid, coid = _order_ref(params)
    return GetOrder(account_id=account_id, symbol=inst.symbol, order_id=oid,
                    client_order_id=coid)


def open_orders(config: ExchangeConfig, params: dict[str, Any], account_id: int
                ) -> GetOpenOrders:
    _check_known(params, _SYMBOL_PARAM)
    inst = instrument(config, params, required=False)
    return GetOpenOrders(account_id=account_id, symbol=inst.symbol if inst else None)


def cancel_all(config: ExchangeConfig, params: dict[str, Any], account_id: int) -> CancelAll:
    _check_known(params, _SYMBOL_PARAM)
    inst = instrument(config, params, required=False)
    return CancelAll(account_id=account_id, symbol=inst.symbol if inst else None)


def balances(params: dict[str, Any], account_id: int) -> GetBalances:
    _check_known(params, frozenset())
    return GetBalances(account_id=account_id)


_REPLAY_PARAMS = frozenset({"after_seq", "limit"})
DEFAULT_REPLAY_LIMIT = 100


def _count(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(Code.INVALID_VALUE, f"'{name}' must be an integer {low}-{high}")
    return value


def replay_reports(params: dict[str, Any], account_id: int) -> GetReports:
    """executions.replay: the account's reports with account_seq > after_seq, one page."""
    _check_known(params, _REPLAY_PARAMS)
    after = _count(params, "after_seq", 0, 0, MAX_WIRE_INT)
    limit = _count(params, "limit", DEFAULT_REPLAY_LIMIT, 1, MAX_REPORTS_PAGE)
    return GetReports(account_id=account_id, after_seq=after, limit=limit)


def no_params(params: dict[str, Any]) -> None:
    _check_known(params, frozenset())


# ---- logon -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LogonParams:
    api_key: str
    timestamp: int
    nonce: str
    signature: str
    cancel_on_disconnect: CancelOnDisconnect


_LOGON_PARAMS = frozenset({"api_key", "timestamp", "nonce", "signature", "cancel_on_disconnect"})


def logon(params: dict[str, Any]) -> LogonParams:
    """Every credential problem is 2002 and says nothing more; cancel_on_disconnect is 1002."""
    raw = params.get("cancel_on_disconnect")
    try:
        cod = CancelOnDisconnect.NONE if raw is None else CancelOnDisconnect(raw)
    except (ValueError, TypeError):
        raise RequestError(Code.INVALID_VALUE,
                           "'cancel_on_disconnect' must be none, session or account") from None
    api_key, ts, nonce, sig = (params.get(k) for k in ("api_key", "timestamp", "nonce",
                                                        "signature"))
    if (
        set(params) - _LOGON_PARAMS
        or not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key)
        or not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < MAX_WIRE_INT
        or not isinstance(nonce, str) or not _NONCE.fullmatch(nonce)
        or not isinstance(sig, str) or not _SIGNATURE.fullmatch(sig)
    ):
        raise RequestError(Code.BAD_CREDENTIALS)
    return LogonParams(api_key=api_key, timestamp=ts, nonce=nonce, signature=sig,
                       cancel_on_disconnect=cod)


# ---- batches and history ---------------------------------------------------------------------

_BATCH_PARAMS = frozenset({"orders"})


def batch_items(params: dict[str, Any]) -> list[dict[str, Any]]:
    """`params.orders`: 1 to MAX_BATCH objects (each checked on its own by the caller)."""
    _check_known(params, _BATCH_PARAMS)
    items = _required(params, "orders")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise RequestError(Code.INVALID_VALUE, f"'orders' must be a list of 1-{MAX_BATCH}")
    return items


def batch_entry(item: object) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RequestError(Code.MALFORMED, "each of 'orders' must be an object")
    return item


_TRADES_PARAMS = frozenset({"symbol", "from_trade_id", "limit"})
_HISTORY_PARAMS = frozenset({"symbol", "limit"})


def account_trades(config: ExchangeConfig, params: dict[str, Any], account_id: int
                   ) -> GetAccountTrades:
    _check_known(params, _TRADES_PARAMS)
    inst = instrument(config, params, required=False)
    start = params.get("from_trade_id")
    if start is not None:
        start = _count(params, "from_trade_id", 1, 1, MAX_WIRE_INT)
    return GetAccountTrades(
        account_id=account_id, symbol=inst.symbol if inst is not None else None,
        from_trade_id=start,
        limit=_count(params, "limit", DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_LIMIT),
    )


def order_history(config: ExchangeConfig, params: dict[str, Any], account_id: int
                  ) -> GetOrderHistory:
    _check_known(params, _HISTORY_PARAMS)
    inst = instrument(config, params, required=False)
    return GetOrderHistory(
        account_id=account_id, symbol=inst.symbol if inst is not None else None,
        limit=_count(params, "limit", DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_LIMIT),
    )
