"""Fuzzing the edges: the WebSocket request parser and validators, the FIX codec, mapping and
session layer. Whatever arrives, only the documented refusals come out, and every command
that passes can be encoded for the link.

Bounded and reproducible (derandomize): a few hundred examples per property, seconds in all.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exchange.link.codec import encode_command
from exchange.model.instruments import load_config
from gateway.core import validation
from gateway.core.validation import RequestError
from gateway.fix import mapping
from gateway.fix.codec import FixMessage, FixStreamParser, encode
from gateway.fix.mapping import FixReject
from gateway.fix.session import FixSession

FUZZ = settings(max_examples=300, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
CONFIG = load_config()

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True) | st.text(max_size=12)
            | st.sampled_from(["BTC-USD", "buy", "sell", "limit", "market", "GTC", "IOC",
                               "0.5", "101.25", "1e3", "99999999999999999999999999", "x" * 40]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
_param_names = st.sampled_from(["symbol", "side", "type", "qty", "price", "tif", "post_only",
                                "client_order_id", "stp", "order_id", "new_qty", "new_price",
                                "api_key", "timestamp", "nonce", "signature", "limit",
                                "orders", "from_seq", "stop_price", "display_qty", "extra"])
_params = st.dictionaries(_param_names, _json, max_size=8)


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parse_request_raw_bytes(data: bytes) -> None:
    with contextlib.suppress(RequestError):
        validation.parse_request(data)


@FUZZ
@given(_json, st.sampled_from(sorted(validation.METHODS)) | st.text(max_size=10), _params)
def test_every_method_validates_or_refuses(req_id: Any, method: str,
                                           params: dict[str, Any]) -> None:
    text = json.dumps({"id": req_id, "method": method, "params": params})
    try:
        request = validation.parse_request(text)
    except RequestError:
        return
    validators = [
        lambda: validation.place_order(CONFIG, request.params, 1, "s"),
        lambda: validation.cancel_order(CONFIG, request.params, 1),
        lambda: validation.amend_order(CONFIG, request.params, 1),
        lambda: validation.order_status(CONFIG, request.params, 1),
        lambda: validation.open_orders(CONFIG, request.params, 1),
        lambda: validation.cancel_all(CONFIG, request.params, 1),
        lambda: validation.logon(request.params),
        lambda: validation.batch_items(request.params),
    ]
    for validate in validators:
        try:
            command = validate()
        except RequestError:
            continue
        if hasattr(command, "__struct_fields__") and type(command).__module__.endswith(
                "commands"):
            encode_command(command)  # what passes always fits the link


_tags = st.sampled_from([11, 37, 38, 40, 41, 44, 54, 55, 59, 18, 99, 111, 34, 49, 56, 52,
                         108, 141, 553, 96, 7, 16, 36, 123, 43, 122])
_values = (st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
           | st.sampled_from(["BTC-USD", "1", "2", "3", "4", "0.5", "101.25", "Y", "N",
                              "99999999999999999999999", "-1", "1e3", ""]))
_fields = st.lists(st.tuples(_tags, _values), max_size=12)
# A well-formed order message with a few fields replaced: reaches past the first check.
_BASE = {55: "BTC-USD", 11: "c1", 54: "1", 38: "1", 40: "2", 44: "50000", 37: "5", 41: "c0"}
_numbers = st.sampled_from(["99999999999999999999999", "18446744073709551616", "0", "-1",
                           "1e3", "0.5", "9" * 40, "4611686018427387905"])
_near_valid = st.dictionaries(st.sampled_from([37, 38, 44, 99, 111]) | _tags,
                              _numbers | _values, max_size=3).map(
    lambda changes: list({**_BASE, **changes}.items()))


@FUZZ
@given(_fields | _near_valid, st.sampled_from(["D", "F", "G", "H"]))
@example([(55, "BTC-USD"), (11, "c1"), (37, "99999999999999999999999")], "F")
@example([(55, "BTC-USD"), (11, "c1"), (37, "18446744073709551616")], "H")
@example([(55, "BTC-USD"), (11, "c1"), (54, "1"), (38, "1"), (40, "2"),
          (44, "9" * 39)], "D")
def test_fix_mapping_builds_a_command_or_rejects(fields: list[tuple[int, str]],
                                                  msg_type: str) -> None:
    msg = FixMessage([(35, msg_type), *fields])
    builders = {
        "D": lambda: mapping.new_order_single(CONFIG, 1, "s", msg),
        "F": lambda: mapping.cancel_request(CONFIG, 1, msg),
        "G": lambda: mapping.cancel_replace_request(CONFIG, 1, msg),
        "H": lambda: mapping.status_request(CONFIG, 1, msg),
    }
    try:
        command = builders[msg_type]()
    except FixReject:
        return
    if type(command).__module__.endswith("commands"):
        encode_command(command)  # type: ignore[arg-type]


@FUZZ
@given(st.lists(st.binary(max_size=80) | st.builds(
    lambda t, f: encode(t, [(49, "C"), (56, "EXCH"), (34, "1"), (52, "20260101-00:00:00")], f),
    st.sampled_from(["A", "0", "1", "2", "4", "5", "D", "x"]), _fields), max_size=8))
def test_fix_stream_and_session_never_raise(chunks: list[bytes]) -> None:
    parser = FixStreamParser()
    session = FixSession("EXCH")
    now = 1_700_000_000.0
    for chunk in chunks:
        for message in parser.feed(chunk):
            session.on_message(message, now)
        session.on_timer(now)
        now += 1.0
