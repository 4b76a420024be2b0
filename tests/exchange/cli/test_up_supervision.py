"""`exchange up` as an operator meets it: a port in use, a directory that is not an exchange's,
a matcher that cannot start, dies, or is orphaned by a killed `exchange up`."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import sys
from pathlib import Path

from gateway.client import TradeClient
from tests.exchange.cli.test_exchange_up import free_port, start_up, stop_up
from tests.support.matcher_harness import MatcherProcess, wait_until

REPO = Path(__file__).resolve().parents[3]


async def run_up_expecting_failure(data_dir: Path, port: int, *extra: str) -> tuple[str, str]:
    """Run `exchange up` that must exit 1; its (stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli.main", "up", "--data-dir", str(data_dir),
        "--port", str(port), "--fsync", "never", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 1, (out, err)
    return out.decode(), err.decode()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def matcher_pid_of(up_pid: int) -> int:
    await wait_until(lambda: bool(children(up_pid)), 30)
    kids = children(up_pid)
    assert len(kids) == 1
    return kids[0]


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whoever adopted it, maybe later)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lock_is_free(data_dir: Path) -> bool:
    fd = os.open(data_dir / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


async def test_second_up_on_the_same_port_is_refused_before_its_banner(tmp_path: Path) -> None:
    port = free_port()
    first = await start_up(tmp_path / "a", port)
    try:
        out, err = await run_up_expecting_failure(tmp_path / "b", port)
        assert "ws://" not in out
        assert f"exchange up: cannot start: port {port} on 127.0.0.1 is in use" in err
    finally:
        assert await stop_up(first) == 0


async def test_port_held_by_anything_is_refused(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        _, err = await run_up_expecting_failure(tmp_path / "d", port)
    assert "cannot start: port" in err and "is in use" in err
    assert not (tmp_path / "d" / "LOCK").exists()  # no matcher was started


async def test_kill_9_of_up_takes_its_matcher_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    port = free_port()
    proc = await start_up(data_dir, port)
    matcher_pid = await matcher_pid_of(proc.pid)
    proc.kill()
    await proc.wait()
    await wait_until(lambda: not is_running(matcher_pid), 30)
    assert lock_is_free(data_dir)
    # And the next `exchange up` on the directory starts at once.
    again = await start_up(data_dir, port)
    assert await stop_up(again) == 0


async def test_dead_matcher_is_restarted_with_its_state_then_given_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    port = free_port()
    proc = await start_up(data_dir, port, "--max-restarts", "1",
                          stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        url = f"ws://127.0.0.1:{port}/ws/trade"
        async with await TradeClient.connect(url, api_key=creds[0]["api_key"],
                                             secret=creds[0]["secret"]) as client:
            await client.place("BTC-USD", "buy", "0.1000", "49000.00", client_order_id="r1")
        os.kill(await matcher_pid_of(proc.pid), signal.SIGKILL)
        async with asyncio.timeout(60):
            err = b""
            while b"restarting it with recovery" not in err:
                line = await proc.stderr.readline()
                assert line, err
                err += line
        assert b"killed by SIGKILL" in err
        async with asyncio.timeout(60):
            while True:  # the gateway's link comes back to the restarted matcher
                try:
                    async with await TradeClient.connect(
                            url, api_key=creds[0]["api_key"], secret=creds[0]["secret"]) as c:
                        orders = await c.open_orders("BTC-USD")
                        break
                except Exception:
                    await asyncio.sleep(0.1)
        assert [o["client_order_id"] for o in orders] == ["r1"]
        # A second death within the window is past the limit: `exchange up` stops and says so.
        os.kill(await matcher_pid_of(proc.pid), signal.SIGKILL)
        async with asyncio.timeout(60):
            rest = await proc.stderr.read()
            assert await proc.wait() == 1
        assert b"exchange up: the matcher stopped: killed by SIGKILL" in rest
        assert b"not restarted: already 1 restarts" in rest
    finally:
        if proc.returncode is None:
            await stop_up(proc)


async def test_up_says_why_the_matcher_cannot_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[assets.USD]\ndecimals = 2\n")
    out, err = await run_up_expecting_failure(tmp_path / "d", free_port(), "--config", str(bad))
    assert "ws://" not in out
    assert "exchange up: cannot start: config needs [assets.NAME] tables" in err
    assert "(exit code 1)" in err


async def test_matcher_reads_the_directory_up_wrote(tmp_path: Path) -> None:
    from exchange.link.client import LinkClient
    from exchange.model.queries import BalanceList, GetBalances

    data_dir = tmp_path / "d"
    proc = await start_up(data_dir, free_port())
    assert await stop_up(proc) == 0
    creds = json.loads((data_dir / "demo-credentials.json").read_text())
    async with MatcherProcess.started(data_dir, extra_args=["--fsync", "never"]) as matcher:
        client = await LinkClient.connect(matcher.address, "gw-test")
        try:
            assert client.welcome.last_seq > 0
            balances = await client.ask(GetBalances(account_id=creds[0]["account_id"]))
            assert isinstance(balances, BalanceList)
            assert any(b.asset == "USD" and b.available > 0 for b in balances.balances)
        finally:
            await client.close()
    assert not (data_dir / "matcher").exists()


async def test_up_from_a_settings_file_with_the_admin_api(tmp_path: Path) -> None:
    import aiohttp

    port, admin = free_port(), free_port()
    token = "s3cret-admin-token-0123"
    (tmp_path / "token").write_text(token + "\n")
    settings = tmp_path / "exchange.toml"
    settings.write_text(f'[gateway]\nport = {port}\nadmin-port = {admin}\n'
                        f'admin-token-file = "{tmp_path / "token"}"\norder-limit = 3\n'
                        f'matcher = "tcp:ignored:1"\n')
    proc = await start_up(tmp_path / "d", None, "--settings", str(settings))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{admin}/admin/accounts",
                                 headers={"Authorization": f"Bearer {token}"}, json={}) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
        creds = json.loads((tmp_path / "d" / "demo-credentials.json").read_text())
        async with await TradeClient.connect(f"ws://127.0.0.1:{port}/ws/trade",
                                             api_key=creds[0]["api_key"],
                                             secret=creds[0]["secret"]) as client:
            await client.place("BTC-USD", "buy", "0.0001", "49000.00")
            assert client.last_rate_limits[0]["limit"] == 3  # order-limit from the file
    finally:
        assert await stop_up(proc) == 0
    # A token too short for the admin API: said before anything starts.
    (tmp_path / "token").write_text("short\n")
    _, err = await run_up_expecting_failure(tmp_path / "d", port, "--settings", str(settings))
    assert "cannot start: --admin-token-file" in err and "at least 16 characters" in err


async def test_fix_port_in_use_is_refused_too(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        fix_port = holder.getsockname()[1]
        out, err = await run_up_expecting_failure(tmp_path / "d", free_port(),
                                                  "--fix-port", str(fix_port))
    assert "ws://" not in out
    assert (f"exchange up: cannot start: FIX port {fix_port} on 127.0.0.1 is in use "
            "(to share it with other gateways: --reuse-port)") in err
