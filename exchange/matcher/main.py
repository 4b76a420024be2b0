"""`exchange matcher`: run the single-writer matcher for the symbols of a config (one shard).

    exchange matcher --config FILE --data-dir DIR --listen unix:PATH|tcp:HOST:PORT
                     [--fsync always|never] [--snapshot-every N] [--snapshot-interval S]
                     [--metrics-port P] [--redis-url URL] [--reports-kept N]
                     [--stop-with-parent PID]

Start-up: check that the data directory is an exchange's own (exchange.journal.datadir; an
empty or new one is marked), lock it, check the config against the instrument parameters
the state was written with (exchange.matcher.params), recover (newest valid snapshot +
journal), cut a torn journal tail, then listen. Exit codes: 0 stopped on SIGTERM/SIGINT,
1 could not start (corrupt journal, bad or changed config, data dir locked...), 2 journal
write/fsync failed, 3 bug.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import os
import signal
import sys
from pathlib import Path

import structlog
from prometheus_client import REGISTRY

from exchange.engine.core import Engine
from exchange.engine.queries import MAX_DEPTH
from exchange.journal.datadir import NotADataDir, claim
from exchange.journal.files import open_private, secure_dir
from exchange.journal.log import DEFAULT_SEGMENT_BYTES, Journal, JournalCorrupt
from exchange.journal.snapshots import SnapshotStore
from exchange.link.auth import LinkTokenError, load_token, process_link_token, use_link_token
from exchange.link.codec import parse_address
from exchange.logs import configure_logging
from exchange.marketdata import publish as md_publish
from exchange.marketdata.port import MarketDataPort, SendToGateways
from exchange.matcher.engine_port import ClassFactory, EngineFactory
from exchange.matcher.loop import Matcher, MatcherOptions
from exchange.matcher.params import ParamsChanged, check_or_record
from exchange.matcher.recovery import RecoveryError, recover
from exchange.matcher.report_log import DEFAULT_CAPACITY, ReportingFactory
from exchange.model.candles import INTERVALS, LAST_BUCKET
from exchange.model.instruments import ConfigError, ExchangeConfig, load_config
from exchange.model.queries import BookSnapshot, CandleList, GetBook, GetCandles
from exchange.pauses import PauseWatch

log = structlog.get_logger("exchange.matcher.main")

# Young-generation threshold well above the default 700: a batch allocates thousands of
# short-lived containers (Results, event lists), and at 700 the collector ran every ~200
# commands. Measured in-process on the bench mix: ~8% less CPU per command, and full
# collections (which walk the whole book: tens of ms with ~100k orders) become rare.
GC_THRESHOLDS = (50_000, 20, 100)


def freeze_gc() -> None:
    """Move everything allocated during start-up and recovery out of the collector's sight,
    and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="instrument config TOML (default: packaged default)")
    parser.add_argument("--data-dir", required=True, help="journal and snapshots live here")
    parser.add_argument("--listen", required=True, help="unix:/path or tcp:host:port")
    parser.add_argument("--link-token-file", default=None,
                        help="shared secret gateways must prove on the link (required for "
                        "tcp:, default $EXCHANGE_LINK_TOKEN_FILE)")
    parser.add_argument("--fsync", choices=("always", "never"), default="always",
                        help="'never' is for benchmarks only: acknowledged commands can be lost")
    parser.add_argument("--matcher-id", default="matcher-1")
    parser.add_argument("--snapshot-every", type=int, default=1_000_000, metavar="COMMANDS")
    parser.add_argument("--snapshot-interval", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("--snapshot-inline", action="store_true",
                        help="serialize snapshots on the event loop instead of in a forked "
                        "child (matching then stalls for the whole serialization)")
    parser.add_argument("--segment-bytes", type=int, default=DEFAULT_SEGMENT_BYTES)
    parser.add_argument("--max-batch", type=int, default=2048)
    parser.add_argument("--max-queue", type=int, default=16384)
    parser.add_argument("--keep-journal", action="store_true",
                        help="never prune journal segments (full replay stays possible)")
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--redis-url", default=None,
                        help="publish market data to Redis; without it, over the link")
    parser.add_argument("--reports-kept", type=int, default=DEFAULT_CAPACITY, metavar="N",
                        help="execution reports kept for replay over all accounts (the "
                        "oldest go first; a replay from before them answers with a gap)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--stop-with-parent", type=int, default=None, metavar="PID",
                        help="stop (as on SIGTERM) when process PID, our parent, dies, however "
                        "it dies (used by `exchange up`)")


def stop_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when our parent dies (Linux PR_SET_PDEATHSIG).

    If the parent is already gone (it died before this call), stop now.
    """
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        raise ParentGone(f"parent process {parent_pid} is gone")


class ParentGone(RuntimeError):
    pass


def make_md_port(redis_url: str | None, send: SendToGateways) -> MarketDataPort:
    return md_publish.make_port(redis_url, send)


class DataDirLocked(RuntimeError):
    pass


def lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive lock for the life of the process: two writers would corrupt it."""
    fd = open_private(data_dir / "LOCK", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise DataDirLocked(f"{data_dir} is in use by another matcher") from exc

    # A forked snapshot child must not keep the lock alive: if this process is killed while
    # the child still writes, a restart must be able to take the directory at once.
    def close_in_child() -> None:
        with contextlib.suppress(OSError):
            os.close(fd)

    os.register_at_fork(after_in_child=close_in_child)
    return fd


def open_matcher(
    data_dir: Path,
    config: ExchangeConfig,
    factory: EngineFactory,
    *,
    fsync: bool = True,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    options: MatcherOptions | None = None,
    redis_url: str | None = None,
) -> Matcher:
    """Recover the engine from `data_dir` and build a matcher ready to `run(listen)`."""
    secure_dir(data_dir)
    store = SnapshotStore(data_dir)
    for path in store.remove_temp_files():
        log.warning("snapshot_temp_removed", path=str(path),
                    detail="left by a crash during a snapshot write")
    recovered = recover(data_dir, config, factory)
    journal = Journal(data_dir, fsync=fsync, segment_bytes=segment_bytes)
    journal.open(recovered.scan.last_seq + 1, recovered.scan)
    log.info("recovered", snapshot_seq=recovered.snapshot_seq, replayed=recovered.replayed,
             last_seq=recovered.scan.last_seq, seconds=round(recovered.seconds, 3),
             torn_tail_bytes=recovered.scan.torn.size if recovered.scan.torn else 0,
             state_hash=recovered.engine.state_hash())
    matcher = Matcher(
        config=config,
        engine=recovered.engine,
        journal=journal,
        snapshots=store,
        last_seq=recovered.scan.last_seq,
        last_ts=recovered.last_ts,
        snapshot_seq=recovered.snapshot_seq,
        options=options or MatcherOptions(),
    )

    def send(symbol: str, payload: bytes) -> None:
        if matcher.server is not None:
            matcher.server.send_to_gateways(symbol, payload)

    port = make_md_port(redis_url, send)
    if isinstance(port, md_publish.MdPublisher):
        # Start the feed from the recovered books: heartbeats and tickers for every symbol
        # at once, not only for those that trade after the restart.
        symbols = list(recovered.engine.config.instruments)  # listed ones included
        snapshots = [recovered.engine.answer(GetBook(symbol=symbol, depth=MAX_DEPTH))
                     for symbol in symbols]
        port.prime([s for s in snapshots if isinstance(s, BookSnapshot)])
        newest = [recovered.engine.answer(GetCandles(symbol=symbol, interval=interval, first=0,
                                                     last=LAST_BUCKET, limit=1))
                  for symbol in symbols for interval in INTERVALS]
        port.prime_candles([c for c in newest if isinstance(c, CandleList)])
    matcher.md_port = port
    return matcher


async def serve(args: argparse.Namespace, config: ExchangeConfig, factory: EngineFactory) -> int:
    options = MatcherOptions(
        matcher_id=args.matcher_id,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        snapshot_every=args.snapshot_every,
        snapshot_interval_s=args.snapshot_interval,
        snapshot_fork=not args.snapshot_inline,
        prune_journal=not args.keep_journal,
    )
    matcher = open_matcher(
        Path(args.data_dir), config, factory, fsync=args.fsync == "always",
        segment_bytes=args.segment_bytes, options=options, redis_url=args.redis_url,
    )
    freeze_gc()  # process-wide, so here rather than in open_matcher (tests embed that)
    pauses = PauseWatch("matcher", REGISTRY)  # gc and loop-lag metrics: process-wide, like gc
    pauses.start()
    try:
        return await matcher.run(args.listen)
    finally:
        pauses.stop()


# The journal thread needs the GIL for a moment after each fsync; with the default 5 ms
# switch interval it could wait that long behind a batch being applied, adding 5 ms to every
# ack under load. 0.5 ms bounds that wait at little cost (only one other thread exists).
SWITCH_INTERVAL_S = 0.0005


def start_failed(error: str, **fields: str) -> int:
    """Log why the matcher cannot start and say it on stderr in one line; exit code 1."""
    log.error("matcher_start_failed", error=error, **fields)
    print(f"exchange matcher: cannot start: {error}", file=sys.stderr, flush=True)
    return 1


def run(args: argparse.Namespace, factory: EngineFactory | None = None) -> int:
    configure_logging("matcher", args.log_level)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if args.fsync == "never":
        message = ("WARNING: --fsync never: acknowledged commands are NOT durable and can be "
                   "lost on a crash. For benchmarks only.")
        print(message, file=sys.stderr, flush=True)
        log.warning("fsync_disabled", detail=message)
    try:
        if args.stop_with_parent is not None:
            stop_with_parent(args.stop_with_parent)
        if args.link_token_file:
            use_link_token(load_token(args.link_token_file))
        if parse_address(args.listen).kind == "tcp" and process_link_token() is None:
            raise LinkTokenError(f"--listen {args.listen} needs --link-token-file: anyone who "
                                 "reaches a TCP link could create keys and move money")
        config = load_config(args.config)
        data_dir = Path(args.data_dir)
        claim(data_dir)
        secure_dir(data_dir)
        lock_fd = lock_data_dir(data_dir)
    except (ConfigError, OSError, DataDirLocked, NotADataDir, ParentGone, ValueError) as exc:
        return start_failed(str(exc))
    try:
        check_or_record(data_dir, config)
    except (ParamsChanged, OSError) as exc:
        os.close(lock_fd)
        return start_failed(str(exc))
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    import uvloop

    try:
        factory = factory or ReportingFactory(ClassFactory(Engine), args.reports_kept)
        return int(uvloop.run(serve(args, config, factory)))
    except (JournalCorrupt, RecoveryError) as exc:
        return start_failed(str(exc),
                            detail="the journal is damaged before its tail; nothing was changed")
    except OSError as exc:
        return start_failed(repr(exc))
    finally:
        os.close(lock_fd)
