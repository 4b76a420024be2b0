"""REST's read-only queries refuse with the trading core's one mapping (outcomes.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from exchange.link.client import LinkDown
from exchange.model.codes import STATUS_OF
from exchange.model.instruments import load_config
from gateway.core import outcomes
from gateway.core.matcher_link import LinkLimits, Overloaded, Unavailable
from gateway.metrics import GatewayMetrics
from gateway.rest.routes import RestApi


class RefusingLink:
    limits = LinkLimits()

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def ask_nowait(self, query: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize("exc", [Overloaded(100), Unavailable("down"), LinkDown("lost")])
async def test_rest_refusals_match_the_trading_core(exc: Exception) -> None:
    api = RestApi(RefusingLink(exc), load_config(), GatewayMetrics())  # type: ignore[arg-type]
    request = make_mocked_request("GET", "/api/book/BTC-USD",
                                  match_info={"symbol": "BTC-USD"})
    response = await api.book(request)
    expected = outcomes.refusal(exc, query=True, retry_after_ms=LinkLimits().retry_after_ms)
    assert expected is not None
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert response.status == STATUS_OF[expected.code]
    assert body["code"] == expected.code and body["msg"] == expected.msg
    assert body.get("retry_after_ms") == expected.retry_after_ms
