"""Listing through the admin HTTP API: list an asset and an instrument, update live
parameters; bad input answers its code and sends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.admin.test_admin_http_input import AUTH, admin_api

SOL: dict[str, Any] = {
    "symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tick_size": "0.01",
    "lot_size": "0.01", "min_qty": "0.01", "max_qty": "10000", "price_band_pct": 10,
    "maker_fee_bps": 10, "taker_fee_bps": 20, "reference_price": "150.00",
}


async def test_list_and_update_over_http(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (matcher, client):
        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            resp = await client.request(method, path, json=body, headers=AUTH)
            return resp.status, await resp.json()

        # Refused at the edge: nothing reaches the journal.
        for body, code in (
            (SOL, 1002),  # unknown asset SOL
            ({**SOL, "base": "BTC", "price_band_pct": "10"}, 1002),  # a string for an int
            ({**SOL, "base": "BTC", "extra": 1}, 1002),
            ({k: v for k, v in SOL.items() if k != "max_qty"}, 1002),
            ({**SOL, "symbol": "BTC-USD", "base": "BTC"}, 3011),
        ):
            status, answer = await call("POST", "/admin/instruments", body)
            assert answer["code"] == code, (body, answer)
            assert status == (409 if code == 3011 else 400)
        status, answer = await call("POST", "/admin/assets", {"asset": "SOL", "decimals": 19})
        assert (status, answer["code"]) == (400, 1002)
        status, answer = await call("POST", "/admin/assets", {"asset": "USD", "decimals": 6})
        assert (status, answer["code"]) == (409, 3011)
        assert matcher.engine.last_seq == 0

        status, answer = await call("POST", "/admin/assets", {"asset": "SOL", "decimals": 9})
        assert (status, answer) == (200, {"asset": "SOL", "decimals": 9})
        status, answer = await call("POST", "/admin/instruments", SOL)
        assert (status, answer) == (200, SOL)
        assert matcher.engine.last_seq == 2

        for path, body, want in (
            ("/admin/instruments/SOL-USD", {"tick_size": "0.1"}, (400, 1002)),
            ("/admin/instruments/SOL-USD", {"price_band_pct": 0}, (400, 1002)),
            ("/admin/instruments/SOL-USD", {"min_qty": "20000"}, (400, 1002)),
            ("/admin/instruments/SOL-USD", {"reference_price": "150.001"}, (400, 1002)),
            ("/admin/instruments/SOL-USD", {}, (400, 1002)),
            ("/admin/instruments/NOPE", {"price_band_pct": 5}, (400, 1003)),
        ):
            status, answer = await call("PATCH", path, body)
            assert (status, answer["code"]) == want, (path, body, answer)
        assert matcher.engine.last_seq == 2

        status, answer = await call("PATCH", "/admin/instruments/SOL-USD",
                                    {"price_band_pct": 5, "reference_price": "155.00"})
        assert status == 200
        assert answer == {**SOL, "price_band_pct": 5, "reference_price": "155.00"}
        status, listed = await call("GET", "/admin/instruments")
        assert status == 200
        assert {"asset": "SOL", "decimals": 9} in listed["assets"]
        assert listed["instruments"][-1] == answer
        assert matcher.engine.config.instruments["SOL-USD"].reference_ticks == 15_500
