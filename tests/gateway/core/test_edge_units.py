"""Unit tests of the edge: request envelope and field validation, logon signatures, nonce and
key caches, token buckets, execution-report rendering."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec
import pytest

from exchange.model.codes import Code
from exchange.model.commands import PlaceOrder
from exchange.model.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from exchange.model.instruments import load_config
from exchange.model.queries import ApiKeyInfo
from gateway.core import auth, validation
from gateway.core.ratelimit import BucketTable, RateLimit, TokenBucket
from gateway.core.reports import avg_px, execution_report, report
from gateway.core.validation import EnvelopeError, RequestError

CONFIG = load_config()
BASE: dict[str, Any] = {"symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "0.5",
                        "price": "101.25", "client_order_id": "c-1"}


def place(**changes: Any) -> PlaceOrder:
    params = {**BASE, **changes}
    return validation.place_order(CONFIG, {k: v for k, v in params.items() if v is not None},
                                  7, "sess")


def code_of(**changes: Any) -> Code:
    with pytest.raises(RequestError) as info:
        place(**changes)
    return info.value.code


def test_place_converts_to_ticks_and_lots() -> None:
    cmd = place()
    assert (cmd.price, cmd.qty, cmd.account_id, cmd.session_id) == (10125, 5000, 7, "sess")
    assert cmd.tif == "GTC" and cmd.stp == "cancel_newest" and not cmd.post_only
    assert place(price="101.2500").price == 10125  # trailing zeros are the same value
    market = place(type="market", price=None)
    assert market.price is None and market.tif == "IOC"
    assert place(type="market", price=None, tif="FOK").tif == "FOK"


@pytest.mark.parametrize("price", [
    "101.255", "0", "0.00", "-1", "NaN", "nan", "Inf", "1e3", "1E3", "+1", " 1", "1 ", "1.",
    ".5", "01.00", "", "0x10", 101, 101.25, None, True, "1" * 41,
])
def test_bad_prices_are_1002(price: object) -> None:
    if price is None:
        assert code_of(price=None) == Code.MALFORMED  # missing
    else:
        assert code_of(price=price) == Code.INVALID_VALUE


@pytest.mark.parametrize("qty", ["0.00001", "0", "1000.0001", "1001", "-0.1", "1e-4", 1])
def test_bad_quantities_are_1002(qty: object) -> None:
    assert code_of(qty=qty) == Code.INVALID_VALUE


def test_other_place_rules() -> None:
    assert code_of(symbol="NOPE-USD") == Code.UNKNOWN_SYMBOL
    assert code_of(symbol=5) == Code.INVALID_VALUE
    assert code_of(type="market") == Code.INVALID_VALUE  # with a price
    assert code_of(type="market", price=None, tif="GTC") == Code.INVALID_VALUE
    assert code_of(post_only=True, tif="IOC") == Code.INVALID_VALUE
    assert code_of(client_order_id="a" * 37) == Code.INVALID_VALUE
    assert code_of(client_order_id="has space") == Code.INVALID_VALUE
    assert code_of(extra=1) == Code.MALFORMED
    assert code_of(price="99999999999999999999.99") == Code.INVALID_VALUE  # past int64 ticks


def test_envelope() -> None:
    req = validation.parse_request('{"id": "x", "method": "ping"}')
    assert (req.id, req.method, req.params) == ("x", "ping", {})
    for text, echoed in [("{", None), ("[]", None), ('{"method": "ping"}', None),
                         ('{"id": true, "method": "ping"}', None),
                         ('{"id": 3, "method": "nope"}', 3),
                         ('{"id": 3, "method": "ping", "params": 1}', 3),
                         ('{"id": 3, "method": "ping", "x": 1}', 3)]:
        with pytest.raises(EnvelopeError) as info:
            validation.parse_request(text)
        assert info.value.code == Code.MALFORMED and info.value.request_id == echoed


def test_order_refs_and_amend() -> None:
    cancel = validation.cancel_order(CONFIG, {"symbol": "BTC-USD", "order_id": 5,
                                              "client_order_id": "c"}, 1)
    assert (cancel.order_id, cancel.client_order_id) == (5, None)
    with pytest.raises(RequestError) as info:
        validation.cancel_order(CONFIG, {"symbol": "BTC-USD", "order_id": -5}, 1)
    assert info.value.code == Code.INVALID_VALUE
    amend = validation.amend_order(CONFIG, {"symbol": "BTC-USD", "client_order_id": "c",
                                            "new_price": "100.00"}, 1)
    assert (amend.new_price, amend.new_qty) == (10000, None)


def test_logon_params_all_fail_as_2002() -> None:
    good = {"api_key": "k", "timestamp": 1, "nonce": "n", "signature": "a" * 64}
    assert validation.logon(good).cancel_on_disconnect == "none"
    for change in ({"api_key": None}, {"timestamp": "1"}, {"nonce": ""},
                   {"signature": "A" * 64}, {"signature": "a" * 63}, {"extra": 1}):
        with pytest.raises(RequestError) as info:
            validation.logon({**good, **change})
        assert info.value.code == Code.BAD_CREDENTIALS
    with pytest.raises(RequestError) as info:
        validation.logon({**good, "cancel_on_disconnect": "always"})
    assert info.value.code == Code.INVALID_VALUE


def test_signature_matches_the_protocol_formula() -> None:
    expected = hmac.new(b"s3cret", b"1700000000000\nabc\nlogon\nKEY",
                        hashlib.sha256).hexdigest()
    assert auth.sign_logon("s3cret", 1700000000000, "abc", "KEY") == expected
    assert auth.signature_ok("s3cret", 1700000000000, "abc", "KEY", expected)
    assert not auth.signature_ok("s3cret", 1700000000001, "abc", "KEY", expected)
    assert auth.timestamp_fresh(10_000, 15_000) and not auth.timestamp_fresh(10_000, 15_001)


def test_nonce_cache_is_bounded_and_forgets_only_stale_nonces() -> None:
    now = [0]
    cache = auth.NonceCache(window_ms=5_000, max_entries=3, clock_ms=lambda: now[0])
    assert cache.use("k", "a") and not cache.use("k", "a")
    assert cache.use("other", "a")  # per key
    assert cache.use("k", "b")
    assert not cache.use("k", "c")  # full: refuse rather than forget a live nonce
    now[0] = 10_001
    assert cache.use("k", "c") and len(cache) == 1
    assert not cache.use("k", "c")


def test_key_cache_ttl_and_bound() -> None:
    now = [0.0]
    cache = auth.KeyCache(max_entries=2, ttl_s=30, clock=lambda: now[0])
    infos = [ApiKeyInfo(api_key=f"k{i}", account_id=i, secret="s", permissions=("read",))
             for i in range(3)]
    for info in infos:
        cache.put(info)
    assert len(cache) == 2 and cache.get("k0") is None and cache.get("k2") is infos[2]
    now[0] = 31.0
    assert cache.get("k2") is None


def test_token_bucket() -> None:
    now = [0]
    bucket = TokenBucket(RateLimit(type="orders", limit=2, window_ms=1_000),
                         clock_ns=lambda: now[0])
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.wire() == {"type": "orders", "window_ms": 1_000, "limit": 2, "count": 2}
    assert bucket.take() == 500  # one token per 500 ms
    now[0] = 250_000_000
    assert bucket.take() == 250
    now[0] = 500_000_000
    assert bucket.take() == 0 and bucket.count() == 2
    now[0] = 10_000_000_000
    assert bucket.count() == 0  # capped at the limit
    table = BucketTable(RateLimit(type="orders", limit=1, window_ms=1), max_entries=2)
    first = table.get("a")
    assert table.get("a") is first
    table.get("b")
    table.get("c")
    assert len(table) == 2


def test_execution_report_is_canonical() -> None:
    event = OrderFilled(
        seq=9, ts=123, exec_id=4, account_id=1, order_id=2, client_order_id="c",
        symbol="BTC-USD", side="buy", order_type="limit", tif="GTC", price=10125, qty=5000,
        cum_qty=3000, leaves_qty=2000, cum_notional=10125 * 1000 + 10100 * 2000,
        status="partially_filled", session_id="", trade_id=1, last_px=10100, last_qty=2000,
        liquidity="taker", fee=12, fee_asset="BTC")
    report = execution_report(CONFIG, event, 3)
    assert report["seq"] == 3 and report["exec_type"] == "trade"
    assert (report["price"], report["qty"], report["last_px"]) == ("101.25", "0.5000", "101.00")
    assert (report["cum_qty"], report["leaves_qty"]) == ("0.3000", "0.2000")
    assert report["avg_px"] == "101.08"  # 101.0833... rounded half up to a tick
    assert (report["fee"], report["fee_asset"]) == ("0.00000012", "BTC")
    inst = CONFIG.instruments["BTC-USD"]
    assert avg_px(inst, 0, 0) == "0.00" and avg_px(inst, 3, 2) == "0.02"


def _order_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        seq=9, ts=123, exec_id=4, account_id=1, order_id=2, client_order_id="c",
        symbol="BTC-USD", side="sell", order_type="limit", tif="GTC", price=10125, qty=5000,
        cum_qty=0, leaves_qty=5000, cum_notional=0, status="new", session_id="",
        account_seq=17)
    fields.update(changes)
    return fields


def test_execution_report_fields_per_event_kind() -> None:
    """Each kind carries the fields docs/PROTOCOL.md gives it and no other; `seq` only when
    pushed. The pushed bytes are the JSON of the same report."""
    events = {
        "new": OrderAccepted(**_order_fields(post_only=False)),
        "stop": OrderAccepted(**_order_fields(order_type="stop_limit", post_only=False,
                                              stop_price=10200, display_qty=1000)),
        "rejected": OrderRejected(**_order_fields(order_id=0, status="rejected", code=3001)),
        "canceled": OrderCanceled(**_order_fields(status="canceled", leaves_qty=0,
                                                  reason="user")),
        "replaced": OrderAmended(**_order_fields(kept_priority=True)),
        "market": OrderExpired(**_order_fields(order_type="market", tif="IOC", price=None,
                                               status="expired", leaves_qty=0)),
    }
    common = {"type", "seq", "account_seq", "exec_id", "order_id", "client_order_id", "symbol",
              "side", "order_type", "tif", "exec_type", "ord_status", "price", "qty",
              "cum_qty", "leaves_qty", "avg_px", "ts", "engine_seq", "last_qty", "last_px",
              "liquidity", "fee", "fee_asset"}
    extra = {"new": set(), "stop": {"stop_price", "display_qty"}, "rejected": {"reject_code"},
             "canceled": {"cancel_reason"}, "replaced": set(), "market": set()}
    for name, event in events.items():
        pushed = execution_report(CONFIG, event, 5)
        assert set(pushed) == common | extra[name], name
        assert msgspec.json.decode(msgspec.json.encode(report(CONFIG, event, 5))) == pushed
        assert pushed["account_seq"] == 17 and pushed["engine_seq"] == 9
        assert (pushed["last_qty"], pushed["last_px"], pushed["liquidity"]) == (
            "0.0000", "0.00", None)
        assert (pushed["fee"], pushed["fee_asset"]) == ("0.000000", "USD")
        replayed = execution_report(CONFIG, event, None)
        assert set(replayed) == set(pushed) - {"seq"}
    assert execution_report(CONFIG, events["stop"], 1)["stop_price"] == "102.00"
    assert execution_report(CONFIG, events["stop"], 1)["display_qty"] == "0.1000"
    assert execution_report(CONFIG, events["rejected"], 1)["reject_code"] == 3001
    assert execution_report(CONFIG, events["canceled"], 1)["cancel_reason"] == "user"
    assert execution_report(CONFIG, events["market"], 1)["price"] is None
