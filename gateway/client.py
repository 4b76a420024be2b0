"""A small async client for the trading WebSocket (and the admin API), on aiohttp.

    async with await TradeClient.connect("ws://127.0.0.1:8080/ws/trade",
                                         api_key=key, secret=secret) as client:
        placed = await client.place("BTC-USD", "buy", "0.5", "50000.00")
        report = await client.next_report()
        await client.cancel("BTC-USD", order_id=placed["order_id"])

Methods return the `result` of the response and raise `ExchangeError` (with `code`, `status`,
`retry_after_ms`) for an error response. `request()` returns the whole response instead.
Execution reports are kept in a bounded buffer (oldest dropped past `max_reports`, counted in
`dropped_reports`) and read with `next_report()` or `async for report in client.reports()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from gateway.core.auth import sign_logon


class ExchangeError(Exception):
    def __init__(self, code: int, msg: str, status: int, retry_after_ms: int | None = None,
                 response: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after_ms = retry_after_ms
        self.response = dict(response or {})


class ConnectionClosed(ConnectionError):
    """The server closed the WebSocket; `close_code` and `reason` say why."""

    def __init__(self, close_code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({close_code}): {reason}")
        self.close_code = close_code
        self.reason = reason


class ReportsGap(Exception):
    """The server no longer keeps the reports after `after_seq`: its oldest kept one is
    `first_kept`. Rebuild from order state (open_orders, status) and go on from there."""

    def __init__(self, after_seq: int, first_kept: int) -> None:
        super().__init__(f"reports after {after_seq} are gone; the oldest kept is {first_kept}")
        self.after_seq = after_seq
        self.first_kept = first_kept


REPLAY_PAGE = 500
RECONNECT_MAX_DELAY_S = 2.0


@dataclass(frozen=True)
class Credentials:
    account_id: int
    api_key: str
    secret: str


class TradeClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession | None,
                 *, max_reports: int = 100_000) -> None:
        self.ws = ws
        self._http = http  # owned when we created it
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[dict[str, Any]]] = {}
        self._reports: deque[dict[str, Any]] = deque(maxlen=max_reports)
        self._report_event = asyncio.Event()
        self.dropped_reports = 0
        self.account_id: int | None = None
        self.session_id: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_rate_limits: list[dict[str, Any]] = []
        self._unmatched: deque[dict[str, Any]] = deque(maxlen=1000)
        self._unmatched_event = asyncio.Event()
        self._closed = asyncio.Event()
        # Resuming: the highest account_seq handed to the reader (None: none seen yet), pushes
        # held back while a replay fills what came before them, and what was dropped as seen.
        self.last_account_seq: int | None = None
        self.duplicate_reports = 0
        self.resumes = 0
        self._held: list[dict[str, Any]] | None = None
        self._resume_task: asyncio.Task[None] | None = None
        # Set by connect(): what reconnect() needs.
        self._url = ""
        self._logon_args: tuple[str, str, str] | None = None
        self._auto_reconnect = False
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._reconnecting = False
        self.reconnects = 0
        self._reader = asyncio.create_task(self._read_loop(ws))

    @classmethod
    async def connect(cls, url: str, *, api_key: str | None = None, secret: str | None = None,
                      cancel_on_disconnect: str = "none",
                      session: aiohttp.ClientSession | None = None,
                      max_reports: int = 100_000, heartbeat: float | None = None,
                      resume_after: int | None = None, auto_reconnect: bool = False
                      ) -> TradeClient:
        """Connect to `ws://host:port/ws/trade`; log on when a key and secret are given.

        `resume_after`: an account_seq this client (or an earlier run of it) has already
        processed; the reports after it are replayed right after the logon. Once logged on,
        `reconnect()` (or, with `auto_reconnect`, a dropped connection) logs on again and
        replays what was missed, so the reports read are contiguous: none missed, none twice.
        """
        http = session or aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, heartbeat=heartbeat, max_msg_size=16 * 1024 * 1024)
        except BaseException:
            if session is None:
                await http.close()
            raise
        client = cls(ws, None if session is not None else http, max_reports=max_reports)
        client._url = url
        client._heartbeat = heartbeat
        client.last_account_seq = resume_after
        if resume_after is not None:
            client._held = []  # pushes wait for the replay of what came before them
        if api_key is not None and secret is not None:
            try:
                await client.logon(api_key, secret, cancel_on_disconnect=cancel_on_disconnect)
                client._logon_args = (api_key, secret, cancel_on_disconnect)
                if resume_after is not None:
                    await client.resume()
            except BaseException:
                await client.close()
                raise
        client._auto_reconnect = auto_reconnect
        return client

    _heartbeat: float | None = None

    async def __aenter__(self) -> TradeClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnect_task, self._resume_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._closed.set()
        self._report_event.set()
        if self._http is not None:
            await self._http.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # ---- plumbing -------------------------------------------------------------------------

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "execution":
                    self._on_report(data)
                    continue
                if "rate_limits" in data:
                    self.last_rate_limits = data["rate_limits"]
                fut = self._pending.pop(data.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                else:
                    # Answers to frames sent with send_raw (or to requests given up on).
                    self._unmatched.append(data)
                    self._unmatched_event.set()
        finally:
            self.close_code = ws.close_code
            extra = getattr(ws, "_close_message", None)
            self.close_reason = str(extra) if extra else ""
            exc = ConnectionClosed(self.close_code, self.close_reason)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(exc)
            self._pending.clear()
            if (self._auto_reconnect and not self._closing and not self._reconnecting
                    and ws is self.ws):
                self._reconnect_task = asyncio.create_task(self._reconnect_forever())
            else:
                self._closed.set()
            self._report_event.set()
            self._unmatched_event.set()

    # ---- resuming -------------------------------------------------------------------------

    def _on_report(self, report: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(report)  # a replay is filling what came before it
            return
        seq = report.get("account_seq")
        last = self.last_account_seq
        if isinstance(seq, int) and last is not None and seq > last + 1 and self._logon_args:
            # A report is missing (e.g. the gateway's own link to the matcher was down):
            # fetch it before handing on this one.
            self._held = [report]
            self._resume_task = asyncio.create_task(self._resume_quietly())
            return
        self._deliver(report)

    def _deliver(self, report: dict[str, Any]) -> None:
        seq = report.get("account_seq")
        if isinstance(seq, int):
            last = self.last_account_seq
            if last is not None and seq <= last:
                self.duplicate_reports += 1
                return
            self.last_account_seq = seq
        if len(self._reports) == self._reports.maxlen:
            self.dropped_reports += 1
        self._reports.append(report)
        self._report_event.set()

    async def resume(self) -> None:
        """Replay the account's reports after `last_account_seq` (0 when none was seen),
        page by page, holding pushed reports back meanwhile; then hand on the held ones that
        are newer. Raises ReportsGap when the server no longer keeps some of them."""
        if self._held is None:
            self._held = []
        self.resumes += 1
        done = False
        try:
            while True:
                page = await self.call(
                    "executions.replay", {"after_seq": self.last_account_seq or 0,
                                          "limit": REPLAY_PAGE})
                if page["gap"]:
                    raise ReportsGap(self.last_account_seq or 0, page["first_kept_seq"])
                for report in page["reports"]:
                    self._deliver(report)
                if not page["more"]:
                    break
            done = True
        finally:
            held, self._held = self._held, None
            # Only after a complete replay: handing on a newer report after a failed one
            # would skip the missing ones (the next resume replays the held ones anyway).
            for report in sorted(held or (), key=lambda r: r.get("account_seq") or 0):
                if done:
                    self._deliver(report)

    async def _resume_quietly(self) -> None:
        with contextlib.suppress(ExchangeError, ConnectionError, TimeoutError):
            await self.resume()

    async def reconnect(self) -> None:
        """A new connection to the same URL, the same logon, then `resume()`."""
        if self._logon_args is None:
            raise RuntimeError("reconnect() needs a client that logged on through connect()")
        self._reconnecting = True
        try:
            await self.ws.close()
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            http = self._http or aiohttp.ClientSession()
            self._http = http
            self.ws = await http.ws_connect(self._url, heartbeat=self._heartbeat,
                                            max_msg_size=16 * 1024 * 1024)
            self._closed.clear()
            self._held = []  # pushes wait for the replay of what came before them
            self._reader = asyncio.create_task(self._read_loop(self.ws))
            api_key, secret, cod = self._logon_args
            await self.logon(api_key, secret, cancel_on_disconnect=cod)
            self.reconnects += 1
            await self.resume()
        finally:
            self._reconnecting = False

    async def _reconnect_forever(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self.reconnect()
                return
            except (OSError, aiohttp.ClientError, ConnectionError, ExchangeError,
                    TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)

    async def send_raw(self, text: str | bytes) -> None:
        """Send a frame as is (tests of malformed input)."""
        if isinstance(text, bytes):
            await self.ws.send_bytes(text)
        else:
            await self.ws.send_str(text)

    async def next_unmatched(self, wait_s: float = 10.0) -> dict[str, Any]:
        """The next response that answered no pending request (e.g. to a send_raw frame)."""
        async with asyncio.timeout(wait_s):
            while not self._unmatched:
                if self.closed:
                    raise ConnectionClosed(self.close_code, self.close_reason)
                self._unmatched_event.clear()
                await self._unmatched_event.wait()
        return self._unmatched.popleft()

    async def request(self, method: str, params: Mapping[str, Any] | None = None, *,
                      request_id: int | str | None = None, wait_s: float = 30.0
                      ) -> dict[str, Any]:
        """Send one request and return the whole response (`status`, `result`/`error`...)."""
        rid: int | str = next(self._ids) if request_id is None else request_id
        if self.closed:
            raise ConnectionClosed(self.close_code, self.close_reason)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        message: dict[str, Any] = {"id": rid, "method": method}
        if params:
            message["params"] = {k: v for k, v in params.items() if v is not None}
        try:
            await self.ws.send_str(json.dumps(message))
            async with asyncio.timeout(wait_s):
                return await fut
        finally:
            self._pending.pop(rid, None)

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """`result` of the response, or ExchangeError."""
        response = await self.request(method, params)
        if "error" in response:
            err = response["error"]
            raise ExchangeError(err["code"], err.get("msg", ""), response["status"],
                                err.get("retry_after_ms"), response)
        return response["result"]

    # ---- methods --------------------------------------------------------------------------

    async def logon(self, api_key: str, secret: str, *, cancel_on_disconnect: str = "none",
                    timestamp: int | None = None, nonce: str | None = None) -> dict[str, Any]:
        ts = time.time_ns() // 1_000_000 if timestamp is None else timestamp
        nonce = secrets.token_hex(12) if nonce is None else nonce
        result: dict[str, Any] = await self.call("session.logon", {
            "api_key": api_key, "timestamp": ts, "nonce": nonce,
            "signature": sign_logon(secret, ts, nonce, api_key),
            "cancel_on_disconnect": cancel_on_disconnect,
        })
        self.account_id = result["account_id"]
        self.session_id = result["session_id"]
        return result

    async def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("ping")
        return result

    async def place(self, symbol: str, side: str, qty: str, price: str | None = None, *,
                    type: str | None = None, tif: str | None = None,
                    post_only: bool | None = None, client_order_id: str | None = None,
                    stp: str | None = None) -> dict[str, Any]:
        """A limit order when `price` is given, else a market order (unless `type` says)."""
        order_type = type or ("limit" if price is not None else "market")
        result: dict[str, Any] = await self.call("order.place", {
            "symbol": symbol, "side": side, "type": order_type, "qty": qty, "price": price,
            "tif": tif, "post_only": post_only,
            "client_order_id": client_order_id or secrets.token_hex(8), "stp": stp,
        })
        return result

    async def cancel(self, symbol: str, *, order_id: int | None = None,
                     client_order_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("order.cancel", {
            "symbol": symbol, "order_id": order_id, "client_order_id": client_order_id})
        return result

    async def amend(self, symbol: str, *, order_id: int | None = None,
                    client_order_id: str | None = None, new_qty: str | None = None,
                    new_price: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("order.amend", {
            "symbol": symbol, "order_id": order_id, "client_order_id": client_order_id,
            "new_qty": new_qty, "new_price": new_price})
        return result

    async def status(self, symbol: str, *, order_id: int | None = None,
                     client_order_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("order.status", {
            "symbol": symbol, "order_id": order_id, "client_order_id": client_order_id})
        return result

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call("orders.open", {"symbol": symbol})
        return result

    async def cancel_all(self, symbol: str | None = None) -> int:
        result = await self.call("orders.cancel_all", {"symbol": symbol})
        return int(result["canceled"])

    async def balances(self) -> dict[str, dict[str, str]]:
        """{asset: {"available", "held"}} from account.balances."""
        result = await self.call("account.balances")
        return {b["asset"]: {"available": b["available"], "held": b["held"]}
                for b in result["balances"]}

    # ---- execution reports ----------------------------------------------------------------

    def pending_reports(self) -> int:
        return len(self._reports)

    async def next_report(self, wait_s: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(wait_s):
            while not self._reports:
                if self.closed and not self._reports:
                    raise ConnectionClosed(self.close_code, self.close_reason)
                self._report_event.clear()
                await self._report_event.wait()
        return self._reports.popleft()

    async def reports(self) -> AsyncIterator[dict[str, Any]]:
        """Execution reports as they come, until the connection closes."""
        while True:
            try:
                yield await self.next_report(wait_s=3600.0)
            except ConnectionClosed:
                return


# ---- accounts through the admin HTTP API -------------------------------------------------------


async def create_funded_account(admin_url: str, token: str,
                                deposits: Mapping[str, str] | None = None, *,
                                permissions: tuple[str, ...] = ("trade", "read"),
                                label: str = "") -> Credentials:
    """Create an account with an API key and deposits via `exchange gateway --admin-port`."""
    headers = {"Authorization": f"Bearer {token}"}
    base = admin_url.rstrip("/")
    async with aiohttp.ClientSession(headers=headers) as http:

        async def post(path: str, body: Mapping[str, Any]) -> dict[str, Any]:
            async with http.post(base + path, json=dict(body)) as resp:
                data: dict[str, Any] = await resp.json()
                if resp.status != 200:
                    raise ExchangeError(data.get("code", 0), data.get("msg", ""), resp.status)
                return data

        account_id = int((await post("/admin/accounts", {"label": label}))["account_id"])
        key = await post(f"/admin/accounts/{account_id}/keys",
                         {"permissions": list(permissions)})
        for asset, amount in (deposits or {}).items():
            await post(f"/admin/accounts/{account_id}/deposit",
                       {"asset": asset, "amount": amount})
    return Credentials(account_id=account_id, api_key=key["api_key"], secret=key["secret"])


async def create_funded_account_via_link(matcher_address: str,
                                         deposits: Mapping[str, str] | None = None, *,
                                         permissions: tuple[str, ...] = ("trade", "read"),
                                         label: str = "") -> Credentials:
    """The same through exchange.link.admin_ops over a direct matcher link (operator side)."""
    from exchange.link import admin_ops
    from exchange.link.client import LinkClient

    link = await LinkClient.connect(matcher_address, "client-admin")
    try:
        account_id = await admin_ops.create_account(link, label)
        api_key, secret = await admin_ops.create_api_key(link, account_id, permissions)
        for asset, amount in (deposits or {}).items():
            await admin_ops.deposit(link, account_id, asset, amount)
    finally:
        await link.close()
    return Credentials(account_id=account_id, api_key=api_key, secret=secret)
