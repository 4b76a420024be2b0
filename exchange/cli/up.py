"""`exchange up`: a matcher subprocess and a gateway together on this machine.

The matcher keeps its journal and snapshots in DATA_DIR/matcher and listens on a unix socket;
the gateway runs in this process and serves WebSocket/REST on --host/--port. Ctrl-C or SIGTERM
stops the gateway (sessions closed), then the matcher (it finishes its batch and exits).
Restarting on the same data dir keeps all state.

With --demo, two demo accounts are created and funded once per data dir, and their keys are
written to DATA_DIR/demo-credentials.json as [{"account_id", "api_key", "secret"}].
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import structlog

from exchange.link.client import LinkClient, LinkDown

log = structlog.get_logger("exchange.cli.up")

DEMO_FILE = "demo-credentials.json"
DEMO_DEPOSITS = {"USD": "1000000", "BTC": "100", "ETH": "1000"}
MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux; leave room


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true",
                        help="create and fund two demo accounts (once per data dir)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--redis", "--redis-url", dest="redis", default=None,
                        help="market data through Redis (default: over the matcher link)")
    parser.add_argument("--config", default=None, help="instrument config TOML")
    parser.add_argument("--fix-port", type=int, default=None,
                        help="also accept FIX 4.4 order entry on this TCP port")
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--log-level", default="info")


def socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / "matcher.sock"
    if len(str(path)) <= MAX_UNIX_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="exchange-")) / "matcher.sock"


def matcher_command(args: argparse.Namespace, sock: Path) -> list[str]:
    cmd = [sys.executable, "-m", "exchange.cli.main", "matcher",
           "--data-dir", str(args.data_dir / "matcher"), "--listen", f"unix:{sock}",
           "--fsync", args.fsync, "--log-level", args.log_level]
    if args.config:
        cmd += ["--config", str(args.config)]
    if args.redis:
        cmd += ["--redis-url", args.redis]
    return cmd


async def wait_matcher(proc: asyncio.subprocess.Process, address: str, limit_s: float = 60.0
                       ) -> None:
    """Until the matcher answers a link handshake (recovery may take a while)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"the matcher exited with code {proc.returncode}")
        try:
            client = await LinkClient.connect(address, "exchange-up-probe", connect_timeout=2.0)
        except (LinkDown, OSError):
            if loop.time() > deadline:
                raise TimeoutError("the matcher did not come up") from None
            await asyncio.sleep(0.1)
            continue
        await client.close()
        return


async def create_demo_accounts(address: str, path: Path) -> list[dict[str, object]]:
    """Two funded accounts with trade+read keys; written atomically with mode 0600."""
    from exchange.link import admin_ops

    client = await LinkClient.connect(address, "exchange-up-demo")
    creds: list[dict[str, object]] = []
    try:
        for n in (1, 2):
            account_id = await admin_ops.create_account(client, f"demo-{n}")
            api_key, secret = await admin_ops.create_api_key(client, account_id)
            for asset, amount in DEMO_DEPOSITS.items():
                if asset in client.welcome.config.assets:
                    await admin_ops.deposit(client, account_id, asset, amount)
            creds.append({"account_id": account_id, "api_key": api_key, "secret": secret})
    finally:
        await client.close()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return creds


async def stop_matcher(proc: asyncio.subprocess.Process, timeout_s: float = 30.0) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                return await proc.wait()
        except TimeoutError:
            log.error("matcher_kill", detail=f"no exit {timeout_s} s after SIGTERM")
            proc.kill()
            return await proc.wait()
    return proc.returncode


def _open_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


async def _up(args: argparse.Namespace) -> int:
    from gateway.app import GatewaySettings
    from gateway.main import serve

    data_dir: Path = args.data_dir
    (data_dir / "matcher").mkdir(parents=True, exist_ok=True)
    sock = socket_path(data_dir)
    address = f"unix:{sock}"
    log_path = data_dir / "matcher.log"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log_fd = _open_log(log_path)
    try:
        # Its own session: Ctrl-C reaches only us, and we stop the matcher in order.
        proc = await asyncio.create_subprocess_exec(
            *matcher_command(args, sock), stdout=log_fd, stderr=log_fd, start_new_session=True)
    finally:
        os.close(log_fd)
    code = 0
    try:
        waiter = asyncio.create_task(wait_matcher(proc, address))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not waiter.done():
            waiter.cancel()
            return 0
        waiter.result()
        creds_path = data_dir / DEMO_FILE
        if args.demo and not creds_path.exists():
            await create_demo_accounts(address, creds_path)
            log.info("demo_accounts_created", path=str(creds_path))

        def ready(port: int) -> None:
            lines = [
                f"exchange up: trading  ws://{args.host}:{port}/ws/trade",
                f"             market   ws://{args.host}:{port}/ws/md",
                f"             REST     http://{args.host}:{port}/api/instruments",
                f"             health   http://{args.host}:{port}/healthz",
                f"             data     {data_dir.resolve()} (matcher log: {log_path})",
            ]
            if args.demo:
                lines.append(f"             demo credentials: {creds_path.resolve()}")
            lines.append("             Ctrl-C stops both")
            print("\n".join(lines), flush=True)

        async def watch_matcher() -> None:
            await proc.wait()
            log.error("matcher_exited", code=proc.returncode, log=str(log_path))
            stop.set()

        watcher = asyncio.create_task(watch_matcher())
        settings = GatewaySettings(matcher=address, gateway_id="exchange-up",
                                   redis_url=args.redis, fix_port=args.fix_port, host=args.host)
        try:
            await serve(settings, args.host, args.port, stop=stop, on_ready=ready)
        finally:
            watcher.cancel()
        if proc.returncode is not None:
            code = 1
    except (RuntimeError, TimeoutError, OSError) as exc:
        log.error("exchange_up_failed", error=str(exc), matcher_log=str(log_path))
        code = 1
    finally:
        matcher_code = await stop_matcher(proc)
        if sock.parent.name.startswith("exchange-"):  # our short temp dir
            with contextlib.suppress(OSError):
                sock.unlink(missing_ok=True)
                sock.parent.rmdir()
        log.info("exchange_up_stopped", matcher_exit=matcher_code)
    return code


def run(args: argparse.Namespace) -> int:
    from exchange.logs import configure_logging

    configure_logging("exchange-up", args.log_level)
    import uvloop

    return int(uvloop.run(_up(args)))
