"""`exchange gateway` as real processes: two gateways share one port (SO_REUSEPORT) in front
of one matcher, and the admin HTTP API (bearer token, localhost) provisions accounts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.client import ExchangeError, TradeClient, create_funded_account
from tests.support.matcher_harness import MatcherProcess

REPO = Path(__file__).resolve().parents[3]
TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayLog:
    """The JSON lines a gateway process wrote to stderr (complete once it has exited)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []


@asynccontextmanager
async def gateway_process(matcher: str, port: int, admin_port: int, token_file: Path,
                          gateway_id: str) -> AsyncIterator[GatewayLog]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli.main", "gateway", "--matcher", matcher,
        "--port", str(port), "--admin-port", str(admin_port),
        "--admin-token-file", str(token_file), "--gateway-id", gateway_id, "--reuse-port",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stderr is not None
    log = GatewayLog()
    head = b""
    try:
        async with asyncio.timeout(30):
            while b"gateway_listening" not in head:
                line = await proc.stderr.readline()
                assert line, "gateway exited early"
                head += line
        # Keep draining its log so the pipe never blocks it.
        drain = asyncio.create_task(proc.stderr.read())
        yield log
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                await proc.wait()
        text = head + await drain
        log.lines = [json.loads(line) for line in text.splitlines() if line.startswith(b"{")]
    assert proc.returncode == 0


async def test_two_gateways_one_port_and_admin_api(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port, admin1, admin2 = free_port(), free_port(), free_port()
    async with MatcherProcess.started(tmp_path / "m", extra_args=["--fsync", "never"]) as m, \
            gateway_process(m.address, port, admin1, token_file, "gw-a") as log_a, \
            gateway_process(m.address, port, admin2, token_file, "gw-b") as log_b:
        admin_url = f"http://127.0.0.1:{admin1}"
        alice = await create_funded_account(admin_url, TOKEN, {"USD": "100000", "BTC": "5"})
        bob = await create_funded_account(f"http://127.0.0.1:{admin2}", TOKEN,
                                          {"USD": "100000", "BTC": "5"})
        url = f"ws://127.0.0.1:{port}/ws/trade"
        # Many connections spread over both processes; reports cross gateways via Interest.
        clients = [await TradeClient.connect(url, api_key=c.api_key, secret=c.secret)
                   for c in (alice, bob, alice, bob)]
        try:
            await clients[0].place("BTC-USD", "sell", "1", "50000.00", client_order_id="x")
            await clients[1].place("BTC-USD", "buy", "1", "50000.00", client_order_id="y")
            for client in clients:
                assert [(await client.next_report())["exec_type"] for _ in range(2)] == [
                    "new", "trade"]
        finally:
            for client in clients:
                await client.close()

        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(f"{admin_url}/admin/accounts/{alice.account_id}/balances",
                                headers=auth) as resp:
                body = await resp.json()
                assert resp.status == 200
                balances = {b["asset"]: b for b in body["balances"]}
                assert balances["USD"]["available"] == "149950.000000"  # 10 bps maker fee
            async with http.get(f"{admin_url}/admin/accounts/1/balances",
                                headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.post(f"{admin_url}/admin/accounts/{bob.account_id}/withdraw",
                                 json={"asset": "USD", "amount": "0.0000001"},
                                 headers=auth) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == 1002
            async with http.post(f"{admin_url}/admin/accounts/{bob.account_id}/withdraw",
                                 json={"asset": "USD", "amount": "1000"}, headers=auth) as resp:
                assert (await resp.json())["available"] == "49000.000000"
            async with http.post(f"{admin_url}/admin/symbols/ETH-USD/halt",
                                 headers=auth) as resp:
                assert resp.status == 200
            async with await TradeClient.connect(url, api_key=bob.api_key,
                                                 secret=bob.secret) as client:
                with pytest.raises(ExchangeError) as info:
                    await client.place("ETH-USD", "buy", "1", "3000.00")
                assert info.value.code == 1003 and info.value.msg == "symbol halted"
            async with http.post(f"{admin_url}/admin/symbols/ETH-USD/resume",
                                 headers=auth) as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200

    # Logs: JSON lines, session events and rejections with session and account bound,
    # nothing per accepted request.
    lines = log_a.lines + log_b.lines
    events = [line["event"] for line in lines]
    assert events.count("session_logon") == 5 and events.count("session_closed") == 5
    for line in lines:
        if line["event"] in ("session_logon", "session_closed", "request_rejected"):
            assert line["session_id"] and isinstance(line["account_id"], int), line
            assert line["service"] == "gateway" and "timestamp" in line
    rejected = [line for line in lines if line["event"] == "request_rejected"]
    assert [(r["method"], r["code"]) for r in rejected] == [("order.place", 1003)]
    assert len(lines) < 60


Health = tuple[int, dict[str, Any]]


async def healthz(port: int) -> Health | None:
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status, await resp.json()
    except aiohttp.ClientConnectionError:
        return None


async def wait_healthz(port: int, ok: Callable[[Health], bool], limit_s: float = 30.0
                       ) -> Health:
    """Poll /healthz (the process is another program) until `ok`; TimeoutError after limit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        answer = await healthz(port)
        if answer is not None and ok(answer):
            return answer
        if loop.time() > deadline:
            raise TimeoutError(f"/healthz never satisfied the condition: {answer}")
        await asyncio.sleep(0.05)


async def test_gateway_started_before_its_matcher(tmp_path: Path) -> None:
    from tests.support.matcher_harness import short_socket_path

    sock = short_socket_path()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli.main", "gateway", "--matcher", f"unix:{sock}",
        "--port", str(port), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        answer = await wait_healthz(port, lambda a: True)
        assert answer == (503, {"status": "starting", "matcher": "down",
                                "reason": "waiting for the first link to the matcher"})
        async with MatcherProcess.started(tmp_path / "m", socket_path=sock,
                                          extra_args=["--fsync", "never"]):
            answer = await wait_healthz(port, lambda a: a[0] == 200)
            assert answer[1]["matcher"] == "up"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0


async def test_gateway_stops_while_waiting_for_its_matcher(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli.main", "gateway", "--matcher",
        f"unix:{tmp_path}/none.sock", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
        cwd=REPO)
    await wait_healthz(port, lambda a: a[0] == 503)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await proc.wait() == 0


async def test_gateway_refuses_a_port_in_use_unless_asked_to_share(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    matcher = f"unix:{tmp_path}/none.sock"
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli.main", "gateway", "--matcher", matcher,
        "--port", str(port), "--reuse-port", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        await wait_healthz(port, lambda a: a[0] == 503)
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchange.cli.main", "gateway", "--matcher", matcher,
            "--port", str(port), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO)
        async with asyncio.timeout(30):
            _, err = await second.communicate()
        assert second.returncode == 1
        assert f"exchange gateway: cannot start: port {port} on 127.0.0.1 is in use" in (
            err.decode())
    finally:
        first.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await first.wait() == 0
