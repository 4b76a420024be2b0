"""Connections that do not send their request headers are closed on a deadline and bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from gateway.app import GatewaySettings
from gateway.main import serve
from tests.support.matcher_harness import MatcherProcess


@asynccontextmanager
async def gateway(tmp_path: Path, **settings: float) -> AsyncIterator[int]:
    async with MatcherProcess.started(tmp_path / "m") as matcher:
        stop, ready = asyncio.Event(), asyncio.Event()
        ports: list[int] = []

        def on_ready(port: int) -> None:
            ports.append(port)
            ready.set()

        task = asyncio.create_task(serve(GatewaySettings(matcher=matcher.address, **settings),
                                         "127.0.0.1", 0, stop=stop, on_ready=on_ready))
        await asyncio.wait_for(ready.wait(), 30)
        try:
            yield ports[0]
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def _closed_within(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the server closes the connection (reads EOF or a reset)."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(1024), limit_s):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def _metric(port: int, name: str) -> float:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


async def test_slow_headers_are_cut_off_and_pending_connections_bounded(tmp_path: Path) -> None:
    async with gateway(tmp_path, header_timeout_s=0.5, max_pending_http=3) as port:
        # Slowloris: a header byte now and then, never the end of the headers.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHo")
        await writer.drain()
        assert await _closed_within(reader, 10) < 5
        writer.close()
        assert await _metric(
            port, 'gateway_http_connections_closed_total{reason="header_timeout"}') >= 1

        # Three silent connections fill the bound; a fourth is cut at once...
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.05)  # let the server see them (accept is asynchronous)
        reader4, writer4 = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_within(reader4, 5) < 0.4
        writer4.close()
        # ...and once the deadline has closed them, requests are served again.
        for r, w in silent:
            assert await _closed_within(r, 10) < 5
            w.close()
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status in (200, 503)
        assert await _metric(
            port, 'gateway_http_connections_closed_total{reason="too_many_pending"}') >= 1


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await asyncio.wait_for(reader.readexactly(length), 10)
    return head


async def test_a_request_in_time_is_not_cut(tmp_path: Path) -> None:
    async with gateway(tmp_path, header_timeout_s=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _get(reader, writer)).startswith(b"HTTP/1.1 ")
        await asyncio.sleep(0.6)  # past the header deadline: keep-alive is not cut by it
        assert (await _get(reader, writer)).startswith(b"HTTP/1.1 ")
        writer.close()
