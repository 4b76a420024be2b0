"""Replay a matcher's data directory offline and print what it rebuilds.

    python -m exchange.matcher.replay --data-dir DIR [--config FILE] [--upto SEQ] [--from-snapshot]
                              [--events-out FILE]

Prints one JSON line: {"last_seq", "state_hash", "replayed", "snapshot_seq", "events_sha256"}.
`--events-out` writes the event stream: for every replayed command, a 4-byte big-endian
length and one msgpack array [seq, [events...]], concatenated. Used to check determinism
(replay in a fresh process with another PYTHONHASHSEED must give the same hash and the same
bytes) and by operators to inspect a journal. Read-only: run it on a stopped matcher's
directory (or a copy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import msgspec

from exchange.journal.datadir import NotADataDir, check_readable
from exchange.matcher.engine_port import EngineFactory, default_factory
from exchange.matcher.recovery import Recovered, recover
from exchange.model.events import Event
from exchange.model.instruments import load_config

_ENCODER = msgspec.msgpack.Encoder()


def replay(
    data_dir: Path,
    *,
    config_path: str | None = None,
    upto_seq: int | None = None,
    from_snapshot: bool = False,
    events_out: Path | None = None,
    factory: EngineFactory | None = None,
) -> tuple[Recovered, str]:
    """The recovered engine and the sha256 of the event stream it produced."""
    digest = hashlib.sha256()
    out = open(events_out, "wb") if events_out is not None else None  # noqa: SIM115
    try:
        def sink(seq: int, events: list[Event]) -> None:
            body = _ENCODER.encode((seq, events))
            chunk = len(body).to_bytes(4, "big") + body
            digest.update(chunk)
            if out is not None:
                out.write(chunk)

        recovered = recover(data_dir, load_config(config_path), factory or default_factory(),
                            use_snapshots=from_snapshot, upto_seq=upto_seq, on_events=sink)
    finally:
        if out is not None:
            out.close()
    return recovered, digest.hexdigest()


def read_event_stream(data: bytes) -> list[tuple[int, bytes]]:
    """(seq, msgpack bytes of [seq, events]) for each record of an --events-out stream."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        body = data[offset + 4 : offset + 4 + size]
        seq, _ = msgspec.msgpack.decode(body, type=tuple[int, list[Event]])
        out.append((seq, body))
        offset += 4 + size
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchange.matcher.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--upto", type=int, default=None)
    parser.add_argument("--from-snapshot", action="store_true")
    parser.add_argument("--events-out", default=None)
    args = parser.parse_args(argv)
    from exchange.logs import configure_logging

    configure_logging("replay", "warning")
    try:
        check_readable(Path(args.data_dir))
    except NotADataDir as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    recovered, sha = replay(
        Path(args.data_dir), config_path=args.config, upto_seq=args.upto,
        from_snapshot=args.from_snapshot,
        events_out=Path(args.events_out) if args.events_out else None,
    )
    print(json.dumps({
        "last_seq": recovered.engine.last_seq,
        "state_hash": recovered.engine.state_hash(),
        "replayed": recovered.replayed,
        "snapshot_seq": recovered.snapshot_seq,
        "events_sha256": sha,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
