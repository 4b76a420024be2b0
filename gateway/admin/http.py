"""The operator's admin HTTP API: localhost only, bearer token, through exchange.link.admin_ops.

Served on its own port bound to 127.0.0.1 (never the public one), and each request must come
from a loopback address and carry `Authorization: Bearer <token>`. Operator commands are
state changes journaled by the matcher; they use their own link connection so that they
never queue behind order flow.

    POST /admin/accounts                      {"label"?}            -> {"account_id"}
    POST /admin/accounts/{id}/keys            {"permissions"?, "orders_limit"?, "requests_limit"?}
                                                                    -> {"api_key", "secret", ...}
    GET  /admin/keys/{api_key}                                       -> {"api_key", "account_id",
                                                  "permissions", "orders_limit", "requests_limit"}
    POST /admin/keys/{api_key}/limits         {"orders_limit"?, "requests_limit"?}
                                                                    -> {"api_key", "orders_limit",
                                                                        "requests_limit"}
    DELETE /admin/keys/{api_key}                                     -> {"api_key", "revoked"}

A key's limits are integers 1..1000000 per the gateway's window; null (or "default") is the
gateway's own limit, and is how a limit left at the default is shown. A limit absent from a
/limits body stays as it is.
    POST /admin/accounts/{id}/deposit         {"asset", "amount"}   -> {"asset", "available"}
    POST /admin/accounts/{id}/withdraw        {"asset", "amount"}   -> {"asset", "available"}
    GET  /admin/accounts/{id}/balances                              -> {"balances": [...]}
    POST /admin/symbols/{symbol}/halt | /resume                     -> {"symbol", "halted"}
    GET  /admin/instruments                                          -> {"assets", "instruments"}
    POST /admin/assets                        {"asset", "decimals"} -> {"asset", "decimals"}
    POST /admin/instruments                   {"symbol", fields...} -> the instrument
    PATCH /admin/instruments/{symbol}         {live fields...}      -> the instrument
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from exchange.link import admin_ops, listing_ops
from exchange.link.client import LinkClient, LinkDown
from exchange.model.codes import MESSAGES, STATUS_OF, Code
from gateway.json_limits import TooDeep, check_depth

log = structlog.get_logger("gateway.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 16 * 1024


def _error(code: int, msg: str) -> web.Response:
    try:
        status = STATUS_OF[Code(code)]
    except ValueError:
        status = 500
    return web.json_response({"code": code, "msg": msg}, status=status)


MIN_ADMIN_TOKEN = 16


class AdminApi:
    def __init__(self, matcher_address: str, token: str, gateway_id: str) -> None:
        if len(token) < MIN_ADMIN_TOKEN:
            raise ValueError(f"the admin token must be at least {MIN_ADMIN_TOKEN} characters")
        self.matcher_address = matcher_address
        self._token = token.encode()
        self.gateway_id = f"{gateway_id}-admin"
        self._client: LinkClient | None = None
        self._lock = asyncio.Lock()

    async def _link(self) -> LinkClient:
        async with self._lock:
            if self._client is None or self._client.closed:
                self._client = await LinkClient.connect(self.matcher_address, self.gateway_id)
            return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_post("/admin/accounts", self.create_account)
        app.router.add_post("/admin/accounts/{account}/keys", self.create_key)
        app.router.add_delete("/admin/keys/{api_key}", self.revoke_key)
        app.router.add_get("/admin/keys/{api_key}", self.show_key)
        app.router.add_post("/admin/keys/{api_key}/limits", self.set_key_limits)
        app.router.add_post("/admin/accounts/{account}/deposit", self.deposit)
        app.router.add_post("/admin/accounts/{account}/withdraw", self.withdraw)
        app.router.add_get("/admin/accounts/{account}/balances", self.balances)
        app.router.add_post("/admin/symbols/{symbol}/halt", self.halt)
        app.router.add_post("/admin/symbols/{symbol}/resume", self.resume)
        app.router.add_get("/admin/instruments", self.instruments)
        app.router.add_post("/admin/assets", self.list_asset)
        app.router.add_post("/admin/instruments", self.list_instrument)
        app.router.add_patch("/admin/instruments/{symbol}", self.update_instrument)

        async def cleanup(app: web.Application) -> None:
            await self.close()

        app.on_cleanup.append(cleanup)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        remote = request.remote or ""
        try:
            loopback = ipaddress.ip_address(remote).is_loopback
        except ValueError:
            loopback = remote == ""  # unix socket peers have no address
        if not loopback:
            return _error(int(Code.NO_PERMISSION), "admin API is localhost only")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        # Header bytes that are not UTF-8 arrive as surrogate escapes: they give back the exact
        # bytes sent, which then simply do not match the token.
        try:
            token_bytes = token.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            token_bytes = b""
        if scheme.lower() != "bearer" or not hmac.compare_digest(token_bytes, self._token):
            return web.json_response({"code": int(Code.BAD_CREDENTIALS),
                                      "msg": MESSAGES[Code.BAD_CREDENTIALS]}, status=401)
        try:
            response = await handler(request)
        except admin_ops.AdminError as exc:
            log.info("admin_rejected", path=request.path, code=exc.code, msg=exc.message)
            return _error(exc.code, exc.message)
        except LinkDown as exc:
            return _error(int(Code.TIMEOUT), f"matcher link: {exc}")
        except web.HTTPException:
            raise
        except Exception:
            # A bug: answer it as one (5002) without the traceback, and keep serving.
            log.exception("admin_failed", method=request.method, path=request.path)
            return _error(int(Code.INTERNAL), MESSAGES[Code.INTERNAL])
        log.info("admin_request", method=request.method, path=request.path,
                 status=response.status)
        return response

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        raw = await request.read()
        try:
            check_depth(raw)
            body = json.loads(raw)
        except TooDeep as exc:
            raise admin_ops.AdminError(int(Code.MALFORMED), str(exc)) from None
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise admin_ops.AdminError(int(Code.MALFORMED), "body is not JSON") from None
        if not isinstance(body, dict):
            raise admin_ops.AdminError(int(Code.MALFORMED), "body must be a JSON object")
        return body

    @staticmethod
    def _account(request: web.Request) -> int:
        raw = request.match_info["account"]
        if not raw.isdigit() or len(raw) > 18:
            raise admin_ops.AdminError(int(Code.INVALID_VALUE), "account id must be an integer")
        return int(raw)

    @staticmethod
    def _str(body: dict[str, Any], name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str):
            raise admin_ops.AdminError(int(Code.INVALID_VALUE), f"'{name}' must be a string")
        return value

    @staticmethod
    def _limit(body: dict[str, Any], name: str) -> int | None:
        """A limit from a body: None if absent, 0 for null/"default", else 1..MAX_KEY_LIMIT."""
        if name not in body:
            return None
        value = body[name]
        return 0 if value is None else admin_ops.parse_key_limit(f"'{name}'", value)

    async def create_account(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        label = body.get("label", "")
        if not isinstance(label, str):
            raise admin_ops.AdminError(int(Code.INVALID_VALUE), "'label' must be a string")
        account_id = await admin_ops.create_account(await self._link(), label)
        return web.json_response({"account_id": account_id})

    async def create_key(self, request: web.Request) -> web.Response:
        account_id = self._account(request)
        body = await self._body(request)
        perms = body.get("permissions", list(admin_ops.PERMISSIONS))
        if not isinstance(perms, list | str):
            raise admin_ops.AdminError(int(Code.INVALID_VALUE), "'permissions' must be a list")
        orders = self._limit(body, "orders_limit") or 0
        requests = self._limit(body, "requests_limit") or 0
        api_key, secret = await admin_ops.create_api_key(
            await self._link(), account_id, perms, orders_limit=orders, requests_limit=requests)
        return web.json_response({"account_id": account_id, "api_key": api_key,
                                  "secret": secret, "orders_limit": orders or None,
                                  "requests_limit": requests or None})

    async def show_key(self, request: web.Request) -> web.Response:
        info = await admin_ops.key_info(await self._link(), request.match_info["api_key"])
        return web.json_response({"api_key": info.api_key, "account_id": info.account_id,
                                  "permissions": list(info.permissions),
                                  "orders_limit": info.orders_limit or None,
                                  "requests_limit": info.requests_limit or None})

    async def set_key_limits(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        unknown = set(body) - {"orders_limit", "requests_limit"}
        if unknown:
            raise admin_ops.AdminError(int(Code.MALFORMED), f"unknown fields {sorted(unknown)}")
        event = await admin_ops.set_key_limits(
            await self._link(), request.match_info["api_key"],
            orders_limit=self._limit(body, "orders_limit"),
            requests_limit=self._limit(body, "requests_limit"))
        return web.json_response({"account_id": event.account_id, "api_key": event.api_key,
                                  "orders_limit": event.orders_limit or None,
                                  "requests_limit": event.requests_limit or None})

    async def revoke_key(self, request: web.Request) -> web.Response:
        event = await admin_ops.revoke_api_key(await self._link(), request.match_info["api_key"])
        return web.json_response({"account_id": event.account_id, "api_key": event.api_key,
                                  "revoked": True})

    async def deposit(self, request: web.Request) -> web.Response:
        account_id = self._account(request)
        body = await self._body(request)
        client = await self._link()
        asset = self._str(body, "asset")
        event = await admin_ops.deposit(client, account_id, asset, self._str(body, "amount"))
        config = client.welcome.config
        return web.json_response({"account_id": account_id, "asset": asset,
                                  "available": config.units_to_asset(asset, event.available)})

    async def withdraw(self, request: web.Request) -> web.Response:
        account_id = self._account(request)
        body = await self._body(request)
        client = await self._link()
        asset = self._str(body, "asset")
        event = await admin_ops.withdraw(client, account_id, asset, self._str(body, "amount"))
        config = client.welcome.config
        return web.json_response({"account_id": account_id, "asset": asset,
                                  "available": config.units_to_asset(asset, event.available)})

    async def balances(self, request: web.Request) -> web.Response:
        account_id = self._account(request)
        client = await self._link()
        config = client.welcome.config
        items = await admin_ops.balances(client, account_id)
        return web.json_response({"account_id": account_id, "balances": [
            {"asset": b.asset, "available": config.units_to_asset(b.asset, b.available),
             "held": config.units_to_asset(b.asset, b.held)} for b in items
        ]})

    async def halt(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        await admin_ops.halt(await self._link(), symbol)
        return web.json_response({"symbol": symbol, "halted": True})

    async def resume(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        await admin_ops.resume(await self._link(), symbol)
        return web.json_response({"symbol": symbol, "halted": False})

    async def instruments(self, request: web.Request) -> web.Response:
        config = (await self._link()).welcome.config
        return web.json_response({
            "assets": [{"asset": a.name, "decimals": a.decimals}
                       for a in config.assets.values()],
            "instruments": [listing_ops.instrument_view(i) for i in config.instruments.values()],
        })

    async def list_asset(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        asset = await listing_ops.list_asset(await self._link(), self._str(body, "asset"),
                                             body.get("decimals"))
        return web.json_response({"asset": asset.name, "decimals": asset.decimals})

    async def list_instrument(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        inst = await listing_ops.list_instrument(await self._link(), body)
        return web.json_response(listing_ops.instrument_view(inst))

    async def update_instrument(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        inst = await listing_ops.update_instrument(await self._link(),
                                                   request.match_info["symbol"], body)
        return web.json_response(listing_ops.instrument_view(inst))
