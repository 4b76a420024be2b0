"""The gateway's /ws/trade request path in one process, with recorded matcher answers.

    python -m bench.gateway [--requests N] [--repeats R] [--sessions S] [--per-turn K]

What the gateway does per order request, with no socket, no other process and no wake-up in
it, so that a change to the request path can be measured on a busy machine: CPU time per
request in-process, instructions per request under `valgrind --tool=callgrind` (run it with
`--repeats 0` and `--repeats 1`: the difference is the replay alone), Python calls per
request under cProfile.

Record: `bench.engine_mix`'s commands (50% limit orders near the touch, 35% cancels, 10%
amends, 5% marketable) become wire requests of S logged-on sessions, one account each, and
go through the real `TradeGateway` -> `TradingCore` -> `MatcherLink` -> `LinkClient`, whose
transport is a stand-in. Every K requests (an event-loop turn) what the link wrote is
decoded, applied to a real engine with the matcher's report log, and the Results are framed
and read back by the link, which answers the requests and pushes execution reports.
Replay (timed, R times): fresh gateway objects get the same request bytes and the same
answer bytes. Prints `RESULT gateway_path us_per_request=<float> frames_per_request=<float>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import msgspec
import structlog
import uvloop

from bench.engine_mix import MixGenerator
from exchange.engine.core import Engine
from exchange.link.client import LinkClient
from exchange.link.codec import (
    FrameSplitter,
    RawSubmit,
    append_frame,
    decode_command,
    decode_inbound,
)
from exchange.link.messages import Result
from exchange.matcher.report_log import ReportingEngine, ReportLog
from exchange.model.commands import AmendOrder, CancelOrder, Command, PlaceOrder
from exchange.model.instruments import ExchangeConfig, load_config
from exchange.model.queries import ApiKeyInfo
from exchange.model.sessions import CancelOnDisconnect
from gateway.core.matcher_link import MatcherLink
from gateway.core.ratelimit import RateLimit, TokenBucket
from gateway.core.trading import TradeLimits, TradingCore
from gateway.metrics import GatewayMetrics
from gateway.ws.session import TradeSession
from gateway.ws.trade import TradeGateway

# Budgets out of the way: the load tester raises them the same way (loadtest.cluster).
_NO_LIMIT = 10**9
Handler = Callable[[bytes, int], None]


class _Transport:
    """Counts what is written; keeps it when asked (the recording reads it back)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.kept: list[bytes] = []
        self.frames = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.keep:
            self.kept.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Ws:
    closed = False


class _Request:
    remote = "127.0.0.1"

    def __init__(self, keep: bool) -> None:
        self.transport = _Transport(keep)


class Gateway:
    """One gateway's trade path over a link whose transport is a stand-in."""

    def __init__(self, config: ExchangeConfig, sessions: int, keep: bool) -> None:
        metrics = GatewayMetrics()
        link = MatcherLink("unix:/nonexistent", "bench", metrics=metrics)
        self.client = LinkClient("bench")
        self.link_out = _Transport(keep=True)
        self.client._transport = cast(asyncio.Transport, self.link_out)
        link._client = self.client
        link._up.set()
        limits = TradeLimits(orders=RateLimit(type="orders", limit=_NO_LIMIT, window_ms=1000),
                             requests=RateLimit(type="requests", limit=_NO_LIMIT,
                                                window_ms=1000))
        core = TradingCore(link, config, limits, metrics)
        self.trade = TradeGateway(core)
        self.sessions: list[TradeSession] = []
        self.handlers: list[Handler] = []
        for i in range(sessions):
            request = _Request(keep)
            session = TradeSession(
                cast(Any, _Ws()), cast(Any, request), send_buffer=limits.send_buffer,
                metrics=metrics, requests_bucket=TokenBucket(limits.requests),
                flusher=self.trade.flusher)
            session.on_sent = self.trade._on_sent
            core.opened(session)
            core.bind(session, ApiKeyInfo(api_key=f"key-{i + 1}", account_id=i + 1,
                                          secret="", permissions=("trade", "read")),
                      CancelOnDisconnect.NONE)
            self.sessions.append(session)
            self.handlers.append(self._handler(session))

    def _handler(self, session: TradeSession) -> Handler:
        """What `TradeGateway.handle` installs for a logged-on session (its `on_direct`)."""
        trade = self.trade
        loop = asyncio.get_running_loop()
        msgs_in = trade.metrics.tally(trade.metrics.messages_in, "trade")
        bytes_in = trade.metrics.tally(trade.metrics.bytes_in, "trade")
        context = contextvars.copy_context()

        def on_message(data: bytes, size: int) -> None:
            session.last_rx = received_at = loop.time()
            msgs_in.value += 1
            bytes_in.value += size
            context.run(trade._process, session, data, size, received_at)

        return on_message

    def written(self, session: int) -> list[bytes]:
        transport = cast(_Request, self.sessions[session].request).transport
        out, transport.kept = transport.kept, []
        return out


def _wire(config: ExchangeConfig, req_id: int, command: Command) -> bytes:
    """The /ws/trade request for one of the mix's commands (docs/PROTOCOL.md)."""
    method: str
    params: dict[str, Any]
    if isinstance(command, PlaceOrder):
        inst = config.instruments[command.symbol]
        method = "order.place"
        params = {"symbol": command.symbol, "side": command.side, "type": command.order_type,
                  "qty": inst.lots_to_qty(command.qty), "client_order_id":
                  command.client_order_id}
        if command.price is not None:
            params["price"] = inst.ticks_to_price(command.price)
        if command.order_type == "limit":
            params["tif"] = command.tif
    elif isinstance(command, CancelOrder):
        method = "order.cancel"
        params = {"symbol": command.symbol, "order_id": command.order_id}
    else:
        assert isinstance(command, AmendOrder)
        inst = config.instruments[command.symbol]
        method = "order.amend"
        params = {"symbol": command.symbol, "order_id": command.order_id}
        if command.new_qty is not None:
            params["new_qty"] = inst.lots_to_qty(command.new_qty)
        if command.new_price is not None:
            params["new_price"] = inst.ticks_to_price(command.new_price)
    return msgspec.json.encode({"id": req_id, "method": method, "params": params})


Turn = list[tuple[int, bytes]]


async def record(config: ExchangeConfig, requests: int, sessions: int, per_turn: int,
                 seed: int) -> tuple[list[Turn], list[bytes], int]:
    """The requests of each turn, the answer bytes the link read after it, frames sent."""
    gateway = Gateway(config, sessions, keep=True)
    engine = ReportingEngine(Engine(config), ReportLog())
    mix = MixGenerator(config, seed=seed, accounts=sessions)
    seq = 0
    for command in mix.setup_commands():
        seq += 1
        engine.apply(command, seq, seq)
    splitter = FrameSplitter()
    turns: list[Turn] = []
    answers: list[bytes] = []
    frames = 0
    req_id = 0
    for _ in range(requests // per_turn):
        turn: Turn = []
        for _ in range(per_turn):
            command = mix.next_command()
            req_id += 1
            session = command.account_id - 1  # type: ignore[union-attr]
            data = _wire(config, req_id, command)
            turn.append((session, data))
            gateway.handlers[session](data, len(data))
        turns.append(turn)
        gateway.client._flush()
        sent = b"".join(gateway.link_out.kept)
        gateway.link_out.kept.clear()
        answer = bytearray()
        for frame in splitter.feed(sent):
            msg = decode_inbound(frame)
            if type(msg) is RawSubmit:
                seq += 1
                events = engine.apply(decode_command(msg.command), seq, seq * 1000)
                mix.observe(events)
                append_frame(answer, Result(req_id=msg.req_id, seq=seq, events=events))
        answers.append(bytes(answer))
        gateway.client._on_data(bytes(answer))
        await asyncio.sleep(0)  # the sessions' flush
        for i in range(sessions):
            frames += sum(_count_frames(chunk) for chunk in gateway.written(i))
    return turns, answers, frames


def _count_frames(data: bytes) -> int:
    count = pos = 0
    while pos < len(data):
        size, header = data[pos + 1] & 0x7F, 2
        if size == 126:
            size, header = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        elif size == 127:
            size, header = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
        pos += header + size
        count += 1
    return count


async def replay(config: ExchangeConfig, turns: Sequence[Turn], answers: Sequence[bytes],
                 sessions: int) -> float:
    """CPU seconds per request of one replay on fresh gateway objects."""
    gateway = Gateway(config, sessions, keep=False)
    gateway.link_out.keep = False
    handlers, client = gateway.handlers, gateway.client
    await asyncio.sleep(0)
    gc.collect()
    count = 0
    start = time.process_time()
    for turn, answer in zip(turns, answers, strict=True):
        for session, data in turn:
            handlers[session](data, len(data))
        count += len(turn)
        client._flush()
        client._on_data(answer)
        await asyncio.sleep(0)
    return (time.process_time() - start) / max(count, 1)


async def run(requests: int, repeats: int, sessions: int, per_turn: int, seed: int) -> int:
    config = load_config()
    turns, answers, frames = await record(config, requests, sessions, per_turn, seed)
    count = sum(len(turn) for turn in turns)
    runs = [await replay(config, turns, answers, sessions) for _ in range(repeats)]
    if runs:
        print(f"replays (µs per request): {', '.join(f'{1e6 * r:.2f}' for r in runs)}")
    best = 1e6 * min(runs) if runs else 0.0
    print(f"RESULT gateway_path us_per_request={best:.2f} "
          f"frames_per_request={frames / max(count, 1):.2f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed replays (best counts)")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--per-turn", type=int, default=4,
                        help="requests between two link reads (an event-loop turn)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return uvloop.run(run(args.requests, args.repeats, args.sessions, args.per_turn,
                          args.seed))


if __name__ == "__main__":
    # The gateway logs sampled rejections (3005 for an order a taker filled meanwhile).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    raise SystemExit(main())
