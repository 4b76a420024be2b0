"""A real QuickFIX (C++) initiator, as clients run it: sequence numbers in its FileStore (no
141=Y on reconnect) and every received message validated against the FIX 4.4 dictionary.
It places an order, vanishes without a Logout, and comes back after a gateway restart and a
matcher restart to the fills that happened meanwhile.

Needs g++ and Debian's libquickfix-dev (QuickFIX 1.15.1), which the test command installs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.app import FIX_KEY
from gateway.client import Credentials, TradeClient
from gateway.core import auth
from tests.support.exchange_harness import RunningExchange, running_exchange, wait_until
from tests.support.fix_dictionary import DICTIONARY_PATH

SOURCE = Path(__file__).parents[2] / "support" / "quickfix" / "initiator.cpp"
HEADER = Path("/usr/include/quickfix/SocketInitiator.h")
FUNDS = {"USD": "1000000", "BTC": "100"}
SENDER = "QFCLIENT"



@pytest.fixture(scope="module")
def initiator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The test command installs both (scripts/test.sh); run by hand without them, say so.
    assert shutil.which("g++") is not None and HEADER.exists(), (
        "needs g++ and Debian's libquickfix-dev: apt-get install g++ libquickfix-dev")
    binary = tmp_path_factory.mktemp("quickfix") / "initiator"
    subprocess.run(["g++", "-std=gnu++14", "-O0", "-Wno-deprecated", "-o", str(binary),
                    str(SOURCE), "-lquickfix", "-lpthread"], check=True, timeout=300)
    return binary


@dataclass
class Run:
    code: int
    lines: list[str]

    def kinds(self, kind: str) -> list[dict[int, str]]:
        """The messages printed under `kind`, as tag -> value."""
        out = []
        for line in self.lines:
            if line.startswith(kind + " "):
                fields = [f.split("=", 1) for f in line[len(kind) + 1:].split("|") if f]
                out.append({int(t): v for t, v in fields})
        return out


def write_config(workdir: Path, port: int) -> Path:
    config = workdir / "initiator.cfg"
    config.write_text(f"""[DEFAULT]
ConnectionType=initiator
HeartBtInt=30
ReconnectInterval=1
FileStorePath={workdir / "store"}
FileLogPath={workdir / "log"}
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
DataDictionary={DICTIONARY_PATH}
ResetOnLogon=N
SocketConnectHost=127.0.0.1
SocketConnectPort={port}

[SESSION]
BeginString=FIX.4.4
SenderCompID={SENDER}
TargetCompID=EXCH
""")
    return config


async def run_initiator(binary: Path, workdir: Path, ex: RunningExchange, creds: Credentials,
                        *args: str, limit_s: float = 40.0) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(binary), str(write_config(workdir, ex.fix_port)), creds.api_key, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(limit_s):
            async for raw in proc.stdout:
                line = raw.decode().rstrip("\n")
                lines.append(line)
                if line.startswith("SIGN "):
                    signature = auth.sign_logon(creds.secret, line[5:], SENDER, creds.api_key)
                    proc.stdin.write(signature.encode() + b"\n")
                    await proc.stdin.drain()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return Run(code, lines)


@pytest.fixture
async def ex(tmp_path: Path) -> AsyncIterator[RunningExchange]:
    async with running_exchange(tmp_path, fix=True) as running:
        yield running


async def test_quickfix_reconnects_with_its_saved_numbers_to_the_missed_fills(
        ex: RunningExchange, initiator: Path, tmp_path: Path) -> None:
    alice = await ex.new_account(FUNDS)
    bob = await ex.new_account(FUNDS)
    workdir = tmp_path / "qf"
    workdir.mkdir()
    first = await run_initiator(initiator, workdir, ex, alice, "place", "qf-1", "1",
                                "50000.00")
    assert first.code == 0, first.lines
    (new,) = first.kinds("APP")
    assert (new[35], new[150], new[11], new[38]) == ("8", "0", "qf-1", "1.0000")
    assert first.kinds("REJECT") == []
    assert ex.runner is not None
    await wait_until(lambda: not ex.runner or not ex.runner.app[FIX_KEY].connections)

    # Away: the gateway restarts, Bob takes 0.4, the matcher restarts, Bob takes 0.6.
    await ex.stop_gateway()
    await ex.start_gateway()
    async with await TradeClient.connect(ex.ws_url, api_key=bob.api_key,
                                         secret=bob.secret) as client:
        await client.place("BTC-USD", "buy", "0.4", "50000.00", client_order_id="b1",
                           tif="IOC")
        await ex.restart_matcher()
    await wait_until(lambda: ex.link.up)
    async with await TradeClient.connect(ex.ws_url, api_key=bob.api_key,
                                         secret=bob.secret) as client:
        await client.place("BTC-USD", "buy", "0.6", "50000.00", client_order_id="b2",
                           tif="IOC")

    second = await run_initiator(initiator, workdir, ex, alice, "collect", "3")
    assert second.code == 0, second.lines
    resent, *fills = second.kinds("APP")
    # It left from inside fromApp, before QuickFIX counted the New report as received: it
    # asks for it again (ResendRequest) and gets it from the store, PossDupFlag=Y.
    assert (resent[150], resent[17], resent[43], resent[122]) == (
        "0", new[17], "Y", new[52])
    assert [(m[150], m[39], m[32], m[11]) for m in fills] == [
        ("F", "1", "0.4000", "qf-1"), ("F", "2", "0.6000", "qf-1")]
    assert all(43 not in m for m in fills)
    assert len({m[17] for m in [new, *fills]}) == 3
    # QuickFIX found nothing to reject, and was not logged out for its numbers.
    assert second.kinds("REJECT") == []
    assert not any("too low" in line for line in second.lines)
    # The Logon went in with the saved numbers: no reset.
    logons = [m for m in second.kinds("ADMIN_IN") if m[35] == "A"]
    assert logons and all(141 not in m for m in logons)
