"""`exchange gateway`: run a gateway process in front of a matcher (aiohttp on uvloop).

A port that is in use is refused. Several gateway processes may serve one port when each is
started with --reuse-port: the listening socket is then opened with SO_REUSEPORT and the kernel
spreads connections between them. The admin HTTP API, when enabled, listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import errno
import gc
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from exchange import credentials
from exchange.link.auth import load_token, use_link_token
from exchange.link.codec import parse_address
from exchange.logs import configure_logging
from exchange.pauses import PauseWatch
from gateway.admin.http import MIN_ADMIN_TOKEN, AdminApi
from gateway.app import METRICS_KEY, GatewaySettings, create_app, default_gateway_id
from gateway.core.matcher_link import LinkLimits
from gateway.core.ports import PortInUse, port_in_use
from gateway.core.ratelimit import RateLimit
from gateway.core.trading import TradeLimits
from gateway.fix.store import DEFAULT_MAX_MESSAGES
from gateway.http_guard import HttpGuard
from gateway.tls import TlsConfigError, server_context

# A young collection every 10,000 net container allocations instead of 700: at 2,000
# requests/s the default ran ~14 young collections a second and a full one every ~10 s. Now
# 50-90x fewer young collections and 8-10x less gc CPU in all, each young one 4-5 ms of CPU
# on the loaded 2-vCPU benchmark machine (docs/PERFORMANCE.md, "Pauses and stalls"); the
# older generations keep their default thresholds.
GC_THRESHOLDS = (10_000, 10, 10)

log = structlog.get_logger("gateway.main")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matcher", default=None,
                        help="unix:/path or tcp:host:port (required, as a flag or a setting)")
    parser.add_argument("--gateway-id", default=None)
    parser.add_argument("--secrets-key-file", type=Path, default=None,
                        help="key ring that opens (and, for the admin API, seals) API secrets "
                        "(default: $EXCHANGE_SECRETS_KEY_FILE or $EXCHANGE_SECRETS_KEY)")
    parser.add_argument("--link-token-file", default=None,
                        help="shared secret proven to the matcher on the link (needed for a "
                        "tcp: matcher; default $EXCHANGE_LINK_TOKEN_FILE)")
    add_serving_arguments(parser)


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a serving gateway, shared with `exchange up`: ports, admin, limits, FIX."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--reuse-port", action="store_true",
                        help="share the port with other gateways started with --reuse-port "
                        "(SO_REUSEPORT); without it a port in use is refused")
    parser.add_argument("--redis", "--redis-url", dest="redis", default=None,
                        help="market data from Redis pub/sub (default: over the matcher link)")
    parser.add_argument("--admin-port", type=int, default=None,
                        help="serve the admin HTTP API on 127.0.0.1:PORT")
    parser.add_argument("--admin-token-file", type=Path, default=None,
                        help="file holding the admin bearer token (needed with --admin-port)")
    parser.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="close a connection whose request headers take longer")
    parser.add_argument("--max-pending-http", type=int, default=512,
                        help="connections allowed to wait for their request headers at once")
    parser.add_argument("--tls-cert", type=Path, default=None,
                        help="PEM certificate chain: serve wss/https and FIX over TLS")
    parser.add_argument("--tls-key", type=Path, default=None,
                        help="PEM private key of --tls-cert")
    parser.add_argument("--log-level", default="info")
    t, k = TradeLimits(), LinkLimits()
    parser.add_argument("--max-message-bytes", type=int, default=t.max_message_bytes)
    parser.add_argument("--max-connections", type=int, default=t.max_connections,
                        help="logged-on trading sessions (WebSocket and FIX)")
    parser.add_argument("--max-pre-logon", type=int, default=t.max_pre_logon,
                        help="trading connections not logged on yet, bounded apart")
    parser.add_argument("--max-connections-per-key", type=int,
                        default=t.max_connections_per_key)
    parser.add_argument("--send-buffer", type=int, default=t.send_buffer,
                        help="messages queued to one client before it is closed as slow")
    parser.add_argument("--heartbeat", type=float, default=t.heartbeat_s, metavar="SECONDS")
    parser.add_argument("--idle-timeout", type=float, default=t.idle_timeout_s,
                        metavar="SECONDS")
    parser.add_argument("--logon-timeout", type=float, default=t.logon_timeout_s,
                        metavar="SECONDS")
    parser.add_argument("--request-timeout", type=float, default=t.request_timeout_s,
                        metavar="SECONDS")
    parser.add_argument("--order-limit", type=int, default=t.orders.limit,
                        help="orders (place/amend) per API key per --order-window-ms")
    parser.add_argument("--order-window-ms", type=int, default=t.orders.window_ms)
    parser.add_argument("--request-limit", type=int, default=t.requests.limit,
                        help="requests per connection per --request-window-ms")
    parser.add_argument("--request-window-ms", type=int, default=t.requests.window_ms)
    parser.add_argument("--window", type=int, default=k.window,
                        help="commands in flight to the matcher")
    parser.add_argument("--queue-size", type=int, default=k.queue_size,
                        help="new orders waiting for the window; beyond it 4002")
    parser.add_argument("--cancel-reserve", type=int, default=k.cancel_reserve)
    parser.add_argument("--fix-port", type=int, default=None,
                        help="also accept FIX 4.4 order entry on this TCP port")
    parser.add_argument("--fix-comp-id", default="EXCH",
                        help="the gateway's FIX CompID (clients' TargetCompID)")
    parser.add_argument("--fix-store", default=None, metavar="DIR",
                        help="FIX sessions' sequence numbers and sent messages; gateways "
                        "sharing DIR resume each other's sessions (default: a new temp dir)")
    parser.add_argument("--fix-store-messages", type=int, default=DEFAULT_MAX_MESSAGES,
                        metavar="N", help="sent messages kept per FIX session for resends")
    parser.add_argument("--fix-reset-at", default=None, metavar="HH:MM",
                        help="daily FIX session reset (UTC): a session first logging on "
                        "after it starts again from MsgSeqNum 1")


def admin_token(args: argparse.Namespace) -> str | None:
    """The admin bearer token from --admin-token-file; SystemExit with one line if unusable."""
    if args.admin_token_file is None:
        if args.admin_port is not None:
            raise SystemExit("--admin-port needs --admin-token-file")
        return None
    try:
        token = str(args.admin_token_file.read_text()).strip()
    except OSError as exc:
        raise SystemExit(f"--admin-token-file {args.admin_token_file}: "
                         f"{exc.strerror or exc}") from None
    if len(token) < MIN_ADMIN_TOKEN:
        raise SystemExit(f"--admin-token-file {args.admin_token_file}: the token must be at "
                         f"least {MIN_ADMIN_TOKEN} characters")
    return token


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    if not args.matcher:
        raise SystemExit("exchange gateway: --matcher is required (a flag, or matcher in "
                         "[gateway] of --settings)")
    try:
        parse_address(args.matcher)
    except ValueError as exc:
        raise SystemExit(f"exchange gateway: --matcher: {exc}") from None
    tls = None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("exchange gateway: --tls-cert and --tls-key go together")
    if args.tls_cert is not None:
        try:
            tls = server_context(args.tls_cert, args.tls_key)
        except TlsConfigError as exc:
            raise SystemExit(f"exchange gateway: {exc}") from None
    trade = TradeLimits(
        max_message_bytes=args.max_message_bytes,
        max_connections=args.max_connections,
        max_pre_logon=args.max_pre_logon,
        max_connections_per_key=args.max_connections_per_key,
        send_buffer=args.send_buffer,
        heartbeat_s=args.heartbeat,
        idle_timeout_s=args.idle_timeout,
        logon_timeout_s=args.logon_timeout,
        request_timeout_s=args.request_timeout,
        orders=RateLimit(type="orders", limit=args.order_limit, window_ms=args.order_window_ms),
        requests=RateLimit(type="requests", limit=args.request_limit,
                           window_ms=args.request_window_ms),
    )
    link = LinkLimits(window=args.window, queue_size=args.queue_size,
                      cancel_reserve=args.cancel_reserve)
    return GatewaySettings(matcher=args.matcher, gateway_id=args.gateway_id or
                           default_gateway_id(), redis_url=args.redis, trade=trade, link=link,
                           fix_port=args.fix_port, fix_comp_id=args.fix_comp_id, host=args.host,
                           reuse_port=args.reuse_port,
                           fix_store=Path(args.fix_store) if args.fix_store else None,
                           fix_store_messages=args.fix_store_messages,
                           fix_reset_at=_reset_time(args.fix_reset_at), tls=tls,
                           header_timeout_s=args.header_timeout,
                           max_pending_http=args.max_pending_http)


def _reset_time(text: str | None) -> datetime.time | None:
    if text is None:
        return None
    try:
        return datetime.time.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"exchange gateway: --fix-reset-at: {text!r} is not HH:MM") from None


def listen_socket(host: str, port: int, *, reuse_port: bool = False,
                  backlog: int = 1024) -> socket.socket:
    """The gateway's listening socket, bound once for the placeholder and the app.

    Without `reuse_port` the bind fails when anything listens on the port, including a
    gateway that shares its port: SO_REUSEPORT only pairs sockets that all set it.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use("port", host, port, reuse_port) from None
            raise
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(settings: GatewaySettings, host: str, port: int, *, stop: asyncio.Event,
                admin_port: int | None = None, admin_token: str | None = None,
                on_ready: Callable[[int], None] | None = None,
                reuse_port: bool = False, sock: socket.socket | None = None) -> None:
    """Serve until `stop` is set; then close sessions and the link cleanly.

    `sock`, when given, is an already bound listening socket (see `listen_socket`) and is
    closed by this function; otherwise one is opened on host:port.
    """
    log.info("gateway_starting", matcher=settings.matcher, host=host, port=port)
    if sock is None:
        sock = listen_socket(host, port, reuse_port=reuse_port)
    bound = int(sock.getsockname()[1])  # the real port when 0 was asked for
    # Until the first link to the matcher (its config builds the app), answer 503 so probes
    # and clients see "starting" rather than a refused connection. The placeholder serves a
    # duplicate of the listening socket: closing it leaves the app's socket listening.
    try:
        placeholder = await _start_placeholder(sock.dup(), settings.tls)
    except BaseException:
        sock.close()
        raise
    try:
        building = asyncio.create_task(create_app(settings))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({building, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not building.done():
            building.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await building
            log.info("gateway_stopped_before_start")
            sock.close()
            return
        app = building.result()
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        guard = HttpGuard(app[METRICS_KEY], header_timeout_s=settings.header_timeout_s,
                          max_pending=settings.max_pending_http)
        # The listener is made here rather than by a SockSite so that every connection
        # goes through the guard's header deadline and bound.
        assert runner.server is not None  # set by setup()
        http_server = await asyncio.get_running_loop().create_server(
            guard.factory(runner.server), sock=sock, ssl=settings.tls)
    except BaseException:
        sock.close()
        raise
    finally:
        await placeholder.cleanup()
    admin_runner: web.AppRunner | None = None
    pauses: PauseWatch | None = None
    try:
        if admin_port is not None:
            if not admin_token:
                raise SystemExit("--admin-port needs --admin-token-file")
            admin = AdminApi(settings.matcher, admin_token, settings.gateway_id)
            admin_runner = web.AppRunner(admin.app(), handle_signals=False, access_log=None)
            await admin_runner.setup()
            await web.TCPSite(admin_runner, "127.0.0.1", admin_port).start()
        # Start-up objects (config, routes, modules) never die: keep them out of the cyclic
        # collector's generations so full collections stay short (docs/ARCHITECTURE.md: the tail).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        pauses = PauseWatch("gateway", app[METRICS_KEY].registry)
        pauses.start()
        log.info("gateway_listening", host=host, port=bound, admin_port=admin_port)
        if on_ready is not None:
            on_ready(bound)
        await stop.wait()
    finally:
        log.info("gateway_stopping")
        if pauses is not None:
            pauses.stop()
        http_server.close()
        guard.close()
        if admin_runner is not None:
            await admin_runner.cleanup()
        await runner.cleanup()


async def _start_placeholder(sock: socket.socket,
                             tls: ssl.SSLContext | None = None) -> web.AppRunner:
    async def starting(request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.json_response({"status": "starting", "matcher": "down",
                                      "reason": "waiting for the first link to the matcher"},
                                     status=503)
        return web.json_response({"code": 5002, "msg": "gateway starting",
                                  "retry_after_ms": 1000}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", starting)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=tls).start()
    return runner


async def _main(args: argparse.Namespace) -> int:
    configure_logging("gateway", args.log_level)
    token = admin_token(args)
    try:
        ring = (credentials.KeyRing.load(args.secrets_key_file) if args.secrets_key_file
                else credentials.KeyRing.from_environment())
        if args.link_token_file:
            use_link_token(load_token(args.link_token_file))
    except (OSError, ValueError) as exc:  # KeyRingError and LinkTokenError are ValueErrors
        log.error("gateway_start_failed", error=str(exc))
        return 1
    if ring is None:
        log.warning("no_secrets_key", detail="API keys with sealed secrets cannot log on and "
                    "the admin API cannot create HMAC keys: pass --secrets-key-file")
    credentials.use_key_ring(ring)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(settings_from_args(args), args.host, args.port, stop=stop,
                    admin_port=args.admin_port, admin_token=token, reuse_port=args.reuse_port)
    except PortInUse as exc:
        print(f"exchange gateway: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    import uvloop

    return int(uvloop.run(_main(args)))
