"""Random faults against the invariant: a subscriber never holds a wrong book without being told.

A seeded flow drives the real Engine while the feed randomly loses batches, the link goes
down and up, subscribers come and go with random views (depth, conflation) and ask for
resyncs. Every book message every subscriber gets is checked against the engine's book at
that seq (and its checksum); after each loss a subscriber must get resync_required before
anything else about the book; at the end every subscriber catches up.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from exchange.marketdata.publish import make_port
from exchange.model.instruments import ExchangeConfig
from tests.gateway.marketdata.test_md_stream import final_seq, gateway, subscribe
from tests.support.md_support import SYMBOL, EngineSource, Flow, MdWs, config

__all__ = ["config"]


@pytest.mark.parametrize(
    "seed", [1, 2, 3, *(pytest.param(s, marks=pytest.mark.slow) for s in range(4, 41))]
)
async def test_random_faults_never_leave_a_wrong_book(config: ExchangeConfig, seed: int) -> None:
    rng = random.Random(seed)
    flow = Flow(100 + seed, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    drop_next = 0
    dropped = 0

    def drop(symbol: str, payload: bytes) -> bool:
        nonlocal drop_next, dropped
        if drop_next > 0:
            drop_next -= 1
            dropped += 1
            return True
        return False

    source.drop = drop

    async def new_sub(client: object) -> MdWs:
        depth = rng.choice((1, 3, 10, 50, 500))
        interval = rng.choice((0, 0, 10, 40))
        channels = rng.choice(
            (("book",), ("book", "trades", "heartbeat"), ("book", "ticker", "trades"))
        )
        return await subscribe(
            client,  # type: ignore[arg-type]
            flow,
            depth=depth,
            interval_ms=interval,
            channels=channels,
            wait_snapshot=False,  # the link may be down just now
        )

    async with gateway(source, config) as client:
        subs = [await new_sub(client) for _ in range(4)]
        link_down_for = 0
        for step in range(400):
            roll = rng.random()
            if roll < 0.04:
                drop_next = rng.randint(1, 3)
            elif roll < 0.06 and subs:
                old = subs.pop(rng.randrange(len(subs)))
                await old.close()
                subs.append(await new_sub(client))
            elif roll < 0.08 and subs:
                victim = rng.choice(subs)
                await victim.ws.send_json({"method": "resync", "params": {"symbols": [SYMBOL]}})
            elif roll < 0.09 and link_down_for == 0:
                link_down_for = rng.randint(3, 15)
                source.up = False
                assert source.state_handler is not None
                source.state_handler(False)
            if link_down_for:
                link_down_for -= 1
                if link_down_for == 0:
                    source.up = True
                    assert source.state_handler is not None
                    source.state_handler(True)
            flow.step()
            if step % 50 == 0:
                flow.tick()
            await asyncio.sleep(0.002 if step % 10 == 0 else 0)
        if not source.up:
            source.up = True
            assert source.state_handler is not None
            source.state_handler(True)
        drop_next = 0
        for _ in range(5):
            flow.step()
            await asyncio.sleep(0)
        end = final_seq(flow)
        for sub in subs:
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end)  # type: ignore[misc]
            assert sub.replica.checked > 0
        assert dropped > 0
        hub_symbols = client.app  # keep the app alive until here
        assert hub_symbols is not None
        for sub in subs:
            await sub.close()
