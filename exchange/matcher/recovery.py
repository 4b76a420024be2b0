"""Rebuild the engine from disk: the newest valid snapshot, then every journal record after it.

Rules (docs/MATCHER.md):
- Snapshots that fail their checksum are passed over with a log line; the next older one is
  used (the journal is pruned only up to the older kept snapshot, so it still connects).
- Journal damage at the very tail of the last segment (a torn write) is truncated by
  `Journal.open` with a log line. Any other damage or a gap stops the start (JournalCorrupt).
- Nothing is skipped silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from exchange.journal.log import Record, ScanResult, scan_journal
from exchange.journal.snapshots import SnapshotStore
from exchange.link.codec import FrameError, decode_command
from exchange.matcher.engine_port import EngineFactory, EngineLike
from exchange.model.events import Event
from exchange.model.instruments import ExchangeConfig

log = structlog.get_logger("exchange.matcher.recovery")

EventSink = Callable[[int, list[Event]], None]


class RecoveryError(RuntimeError):
    pass


@dataclass(slots=True)
class Recovered:
    engine: EngineLike
    snapshot_seq: int
    replayed: int
    last_seq: int
    last_ts: int
    scan: ScanResult
    seconds: float


def recover(
    data_dir: Path,
    config: ExchangeConfig,
    factory: EngineFactory,
    *,
    use_snapshots: bool = True,
    upto_seq: int | None = None,
    on_events: EventSink | None = None,
) -> Recovered:
    """The engine state after every journaled command (or up to `upto_seq`)."""
    started = time.perf_counter()
    store = SnapshotStore(data_dir)
    snapshot_seq = 0
    engine: EngineLike | None = None
    if use_snapshots:
        snap, rejected = store.newest_valid()
        for path, why in rejected:
            log.error("snapshot_unusable", path=str(path), reason=why)
        if snap is not None:
            try:
                engine = factory.restore(config, snap.data)
            except ValueError as exc:  # e.g. made for other symbols than this config's
                raise RecoveryError(f"{snap.path}: {exc}") from None
            if engine.last_seq != snap.seq:
                raise RecoveryError(
                    f"{snap.path}: engine restored at seq {engine.last_seq}, file says {snap.seq}"
                )
            snapshot_seq = snap.seq
            log.info("snapshot_loaded", path=str(snap.path), seq=snap.seq, bytes=len(snap.data))
    if engine is None:
        engine = factory.new(config)
    replayed = 0
    last_ts = 0
    scan: ScanResult | None = None
    apply = engine.apply
    for item in scan_journal(data_dir, after_seq=snapshot_seq):
        if isinstance(item, Record):
            if upto_seq is not None and item.seq > upto_seq:
                continue
            try:
                command = decode_command(item.command)
            except FrameError as exc:
                raise RecoveryError(
                    f"{item.path}: record seq {item.seq} at offset {item.offset} holds a "
                    f"command that does not decode: {exc}"
                ) from exc
            events = apply(command, item.seq, item.ts)
            if on_events is not None:
                on_events(item.seq, events)
            replayed += 1
            last_ts = item.ts
        else:
            scan = item
    assert scan is not None
    if scan.torn is not None:
        log.warning("journal_torn_tail", path=str(scan.torn.path), offset=scan.torn.offset,
                    bytes_cut=scan.torn.size, reason=scan.torn.reason)
    return Recovered(
        engine=engine,
        snapshot_seq=snapshot_seq,
        replayed=replayed,
        last_seq=engine.last_seq,
        last_ts=last_ts,
        scan=scan,
        seconds=time.perf_counter() - started,
    )
