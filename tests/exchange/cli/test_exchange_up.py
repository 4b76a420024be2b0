"""`exchange up --demo`: both processes start, demo accounts trade, Ctrl-C stops both, and a
restart on the same data dir keeps accounts, credentials and orders."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import aiohttp

from gateway.client import TradeClient

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_up(data_dir: Path, port: int | None, *extra: str, stderr: int | None = None
                   ) -> asyncio.subprocess.Process:
    """`exchange up --demo` with its banner read; stderr to DEVNULL unless given. With
    `port` None, no --port flag (the port then comes from `extra`, e.g. --settings)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    port_flag = [] if port is None else ["--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli.main", "up", "--demo", "--data-dir", str(data_dir),
        *port_flag, "--fsync", "never", *extra, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL if stderr is None else stderr, env=env, cwd=REPO,
        umask=0,  # the data dir must be private whatever the umask
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        banner = ""
        while "Ctrl-C" not in banner:
            line = await proc.stdout.readline()
            assert line, f"exchange up exited early: {banner}"
            banner += line.decode()
    assert f"ws://127.0.0.1:{port or ''}" in banner and "/ws/trade" in banner
    return proc


async def stop_up(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        return await proc.wait()


async def test_exchange_up_demo_smoke_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    proc = await start_up(data_dir, port)
    try:
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        assert len(creds) == 2
        assert {"account_id", "api_key", "secret"} <= set(creds[0])
        url = f"ws://127.0.0.1:{port}/ws/trade"
        async with await TradeClient.connect(url, api_key=creds[0]["api_key"],
                                             secret=creds[0]["secret"]) as a:
            placed = await a.place("BTC-USD", "buy", "0.1000", "49000.00",
                                   client_order_id="demo-1")
            assert placed["status"] == "new"
            balances = await a.balances()
            assert balances["USD"]["held"] == "4900.000000"
        async with (aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/healthz") as resp):
            assert resp.status == 200
    finally:
        code = await stop_up(proc)
    assert code == 0
    assert not any(p.name == "matcher.sock" and p.is_socket() for p in data_dir.iterdir())
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in data_dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # Same data dir: the same credentials (not recreated) and the resting order survive.
    proc = await start_up(data_dir, port)
    try:
        assert json.loads((data_dir / "demo-credentials.json").read_text()) == creds
        async with await TradeClient.connect(url, api_key=creds[0]["api_key"],
                                             secret=creds[0]["secret"]) as a:
            orders = await a.open_orders("BTC-USD")
            assert [o["client_order_id"] for o in orders] == ["demo-1"]
    finally:
        assert await stop_up(proc) == 0
