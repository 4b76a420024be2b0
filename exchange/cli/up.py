"""`exchange up`: a matcher subprocess and a gateway together on this machine.

The matcher keeps its journal and snapshots in DATA_DIR (the layout every command uses:
exchange.journal.datadir) and listens on a unix socket; the gateway runs in this process and
serves WebSocket/REST on --host/--port, which must be free (unless --reuse-port). Ctrl-C or
SIGTERM stops the gateway (sessions closed), then the matcher (it finishes its batch and
exits). The matcher stops with this process however it dies, and is restarted with recovery
when it dies alone (exchange.cli.supervise). Why it cannot start is said on the terminal.
Restarting on the same data dir keeps all state.

With --demo, two demo accounts are created and funded once per data dir, and their keys are
written to DATA_DIR/demo-credentials.json as [{"account_id", "api_key", "secret"}].

API secrets are sealed at rest with the key ring of --secrets-key-file (default
$EXCHANGE_SECRETS_KEY_FILE, else DATA_DIR.secrets-key beside the data dir; made on first use):
never inside the data dir, so a copy of the data dir alone does not give the secrets away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import structlog

from exchange import credentials
from exchange.cli.supervise import MatcherFailed, MatcherSupervisor, say
from exchange.journal.datadir import NotADataDir, claim
from exchange.journal.files import secure_dir
from exchange.link.client import LinkClient, LinkDown
from gateway.core.ports import PortInUse
from gateway.main import (
    add_serving_arguments,
    admin_token,
    listen_socket,
    serve,
    settings_from_args,
)

log = structlog.get_logger("exchange.cli.up")

DEMO_FILE = "demo-credentials.json"
DEMO_DEPOSITS = {"USD": "1000000", "BTC": "100", "ETH": "1000"}
MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux; leave room


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true",
                        help="create and fund two demo accounts (once per data dir)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--config", default=None, help="instrument config TOML")
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--max-restarts", type=int, default=3,
                        help="restarts of a matcher that dies, within --restart-window")
    parser.add_argument("--restart-window", type=float, default=300.0, metavar="SECONDS")
    # Every option of `exchange gateway` but --matcher and --gateway-id: ports, admin API,
    # limits, Redis, FIX.
    add_serving_arguments(parser)
    parser.add_argument("--secrets-key-file", type=Path, default=None,
                        help="key ring sealing API secrets (default: $EXCHANGE_SECRETS_KEY_FILE "
                        "or DATA_DIR.secrets-key, created if missing)")


def key_ring(args: argparse.Namespace) -> credentials.KeyRing:
    """The ring of --secrets-key-file, else $EXCHANGE_SECRETS_KEY, else the file
    $EXCHANGE_SECRETS_KEY_FILE names, else DATA_DIR.secrets-key; a missing file is made."""
    path: Path | None = args.secrets_key_file
    if path is None:
        if os.environ.get(credentials.KEY_ENV):
            return credentials.KeyRing.parse(os.environ[credentials.KEY_ENV])
        named = os.environ.get(credentials.KEY_FILE_ENV)
        path = Path(named) if named else args.data_dir.parent / (
            args.data_dir.resolve().name + ".secrets-key")
    if not path.exists():
        credentials.write_new_key_file(path)
        log.info("secrets_key_created", path=str(path))
    return credentials.KeyRing.load(path)


def socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / "matcher.sock"
    if len(str(path)) <= MAX_UNIX_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="exchange-")) / "matcher.sock"


def matcher_command(args: argparse.Namespace, sock: Path) -> list[str]:
    cmd = [sys.executable, "-m", "exchange.cli.main", "matcher",
           "--data-dir", str(args.data_dir), "--listen", f"unix:{sock}",
           "--fsync", args.fsync, "--log-level", args.log_level]
    if args.config:
        cmd += ["--config", str(args.config)]
    if args.redis:
        cmd += ["--redis-url", args.redis]
    return cmd


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


async def _answers(address: str) -> bool:
    """Whether a matcher already listens at `address` (left by another `exchange up`)."""
    try:
        client = await LinkClient.connect(address, "exchange-up-probe", connect_timeout=2.0)
    except (LinkDown, OSError):
        return False
    await client.close()
    return True


async def _up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    log_path = data_dir / "matcher.log"
    try:
        token = admin_token(args)
    except SystemExit as exc:
        say(f"cannot start: {exc}")
        return 1
    try:
        claim(data_dir)
        secure_dir(data_dir)
        credentials.use_key_ring(key_ring(args))
        listening = listen_socket(args.host, args.port, reuse_port=args.reuse_port)
    except (NotADataDir, PortInUse, credentials.KeyRingError) as exc:
        say(f"cannot start: {exc}")
        return 1
    except OSError as exc:
        say(f"cannot start: {exc.strerror or exc} ({args.host}:{args.port}, {data_dir})")
        return 1
    sock = socket_path(data_dir)
    address = f"unix:{sock}"
    if await _answers(address):
        listening.close()
        say(f"cannot start: {data_dir} is in use by another exchange "
            f"(its matcher answers on {sock})")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def restarting(reason: str, count: int) -> None:
        say(f"the matcher stopped ({reason}); restarting it with recovery "
            f"({count} of at most {args.max_restarts} within {args.restart_window:g} s)")

    supervisor = MatcherSupervisor(matcher_command(args, sock), address, log_path,
                                   max_restarts=args.max_restarts,
                                   window_s=args.restart_window, on_restart=restarting)
    code = 0
    watcher: asyncio.Task[str] | None = None
    try:
        starting = asyncio.create_task(supervisor.start())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not starting.done():
            starting.cancel()
            listening.close()
            return 0
        starting.result()
        creds_path = data_dir / DEMO_FILE
        if args.demo and not creds_path.exists():
            await create_demo_accounts(address, creds_path)
            log.info("demo_accounts_created", path=str(creds_path))

        def ready(port: int) -> None:
            print("\n".join(banner(args, port, data_dir, log_path, creds_path)), flush=True)

        failure: list[str] = []

        async def watch_matcher() -> str:
            why = await supervisor.watch()
            failure.append(why)
            stop.set()
            return why

        watcher = asyncio.create_task(watch_matcher())
        args.matcher, args.gateway_id = address, "exchange-up"
        settings = settings_from_args(args)
        if args.fix_store is None:  # FIX sessions resume across restarts of `exchange up`
            settings = dataclasses.replace(settings, fix_store=data_dir / "fix-store")
        await serve(settings, args.host, args.port, stop=stop, on_ready=ready, sock=listening,
                    admin_port=args.admin_port, admin_token=token)
        if failure:
            say(failure[0])
            code = 1
    except (MatcherFailed, PortInUse) as exc:  # PortInUse: the FIX port
        listening.close()
        say(f"cannot start: {exc}")
        code = 1
    except (RuntimeError, TimeoutError, OSError) as exc:
        listening.close()
        log.error("exchange_up_failed", error=str(exc), matcher_log=str(log_path))
        say(f"stopped: {exc}")
        code = 1
    finally:
        if watcher is not None:
            watcher.cancel()
        matcher_code = await supervisor.stop()
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


def banner(args: argparse.Namespace, port: int, data_dir: Path, log_path: Path,
           creds_path: Path) -> list[str]:
    """What `exchange up` prints once serving: every address, with its scheme under TLS."""
    tls = getattr(args, "tls_cert", None) is not None
    ws, http, fix = ("wss", "https", "tls") if tls else ("ws", "http", "tcp")
    lines = [
        f"exchange up: trading  {ws}://{args.host}:{port}/ws/trade",
        f"             market   {ws}://{args.host}:{port}/ws/md",
        f"             REST     {http}://{args.host}:{port}/api/instruments",
        f"             health   {http}://{args.host}:{port}/healthz",
    ]
    if args.fix_port is not None:
        lines.append(f"             FIX 4.4  {fix}://{args.host}:{args.fix_port}")
    if args.admin_port is not None:
        lines.append(f"             admin    http://127.0.0.1:{args.admin_port}/admin")
    lines.append(f"             data     {data_dir.resolve()} (matcher log: {log_path})")
    if args.demo:
        lines.append(f"             demo credentials: {creds_path.resolve()}")
    lines.append("             Ctrl-C stops both")
    return lines
