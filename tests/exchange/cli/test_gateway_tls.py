"""`exchange gateway --tls-cert/--tls-key`: wss, https and FIX over TLS, with a certificate the
test makes; plain connections to the same ports get nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.client import TradeClient, create_funded_account_via_link
from gateway.fix.client import FixClient
from tests.exchange.cli.test_gateway_cli import REPO, free_port
from tests.support.matcher_harness import MatcherProcess
from tests.support.tls_cert import client_context, make_self_signed


async def test_wss_https_and_fix_over_tls(tmp_path: Path) -> None:
    cert, key = await asyncio.to_thread(make_self_signed, tmp_path)
    tls = client_context(cert)
    port, fix_port = free_port(), free_port()
    async with MatcherProcess.started(tmp_path / "m") as matcher:
        creds = await create_funded_account_via_link(matcher.address, {"USD": "1000"})
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchange.cli.main", "gateway", "--matcher", matcher.address,
            "--port", str(port), "--fix-port", str(fix_port), "--tls-cert", str(cert),
            "--tls-key", str(key), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO)
        assert proc.stderr is not None
        try:
            async with asyncio.timeout(30):
                head = b""
                while b"gateway_listening" not in head:
                    line = await proc.stderr.readline()
                    assert line, f"gateway exited early: {head.decode()}"
                    head += line
            drain = asyncio.create_task(proc.stderr.read())
            connector = aiohttp.TCPConnector(ssl=tls)
            async with aiohttp.ClientSession(connector=connector) as http:
                async with http.get(f"https://127.0.0.1:{port}/api/instruments") as resp:
                    assert resp.status == 200
                client = await TradeClient.connect(
                    f"wss://127.0.0.1:{port}/ws/trade", api_key=creds.api_key,
                    secret=creds.secret, session=http)
                assert client.account_id == creds.account_id
                await client.close()
            # Plain HTTP to the TLS port gets no answer.
            async with aiohttp.ClientSession() as plain:
                with pytest.raises(aiohttp.ClientError):
                    await plain.get(f"http://127.0.0.1:{port}/healthz",
                                    timeout=aiohttp.ClientTimeout(total=5))
            reader, writer = await asyncio.open_connection("127.0.0.1", fix_port, ssl=tls,
                                                           server_hostname="localhost")
            fix = FixClient(reader, writer, "TLSCLIENT", "EXCH")
            answer = await fix.logon(creds.api_key, creds.secret)
            assert answer.get(35) == "A"
            writer.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                await proc.wait()
            await drain
