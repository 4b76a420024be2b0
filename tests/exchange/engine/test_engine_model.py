"""Model-based tests: seeded random command streams against the naive reference engine.

After every command: the same events (every field), the same whole book and balances of
every account, `validate()`, and conservation of every asset (zero-sum).
"""

from __future__ import annotations

from itertools import chain, islice

import pytest

from exchange.engine.core import Engine
from exchange.model.events import ORDER_EVENTS, BookChanged, TradeExecuted
from exchange.model.instruments import ExchangeConfig, load_config
from exchange.model.queries import BalanceList, BookSnapshot, GetBalances, GetBook
from tests.support.reference_engine import ReferenceEngine, StreamGenerator

CONFIG = load_config()


def check_same(engine: Engine, ref: ReferenceEngine, config: ExchangeConfig) -> None:
    engine.validate()
    for symbol in config.instruments:
        snap = engine.answer(GetBook(symbol=symbol, depth=1000))
        assert isinstance(snap, BookSnapshot)
        assert (snap.bids, snap.asks) == ref.book(symbol), symbol
        assert snap.book_seq == ref.book_seq[symbol]
        assert snap.last_trade_id == ref.trade_id[symbol]
    totals = dict.fromkeys(config.assets, 0)
    for account_id in ref.accounts:
        got = engine.answer(GetBalances(account_id=account_id))
        assert isinstance(got, BalanceList)
        rows = [(b.asset, b.available, b.held) for b in got.balances]
        assert rows == ref.balances(account_id), account_id
        for asset, available, held in rows:
            assert available >= 0 and held >= 0
            totals[asset] += available + held
    assert totals == ref.net, "money not conserved"


def run_stream(seed: int, n: int, accounts: int = 4) -> Engine:
    engine = Engine(CONFIG)
    ref = ReferenceEngine(CONFIG)
    gen = StreamGenerator(CONFIG, seed, accounts)
    last_exec = 0
    book_seqs: dict[str, int] = dict.fromkeys(CONFIG.instruments, 0)
    trade_ids: dict[str, int] = dict.fromkeys(CONFIG.instruments, 0)
    for seq, command in enumerate(chain(gen.setup(), islice(gen, n)), start=1):
        ts = 1_000 * seq
        got = engine.apply(command, seq, ts)
        want = ref.apply(command, seq, ts)
        if got != want:
            lines = [f"seq {seq}: {command!r}"]
            for i in range(max(len(got), len(want))):
                g = got[i] if i < len(got) else None
                w = want[i] if i < len(want) else None
                lines.append(f"{'  ' if g == w else '!='} engine {g!r}\n   ref    {w!r}")
            pytest.fail("\n".join(lines))
        # The live set: the stream lists assets and instruments and changes their parameters.
        assert engine.config == ref.config
        check_same(engine, ref, engine.config)
        # Contiguity, checked directly rather than only through the reference.
        for e in got:
            assert (e.seq, e.ts) == (seq, ts)
            if isinstance(e, ORDER_EVENTS):
                assert e.exec_id == last_exec + 1
                last_exec = e.exec_id
            elif isinstance(e, BookChanged):
                assert e.book_seq == book_seqs.get(e.symbol, 0) + 1
                book_seqs[e.symbol] = e.book_seq
            elif isinstance(e, TradeExecuted):
                assert e.trade_id == trade_ids.get(e.symbol, 0) + 1
                trade_ids[e.symbol] = e.trade_id
        gen.observe(got)
    return engine


@pytest.mark.parametrize("seed", range(1, 9))
def test_random_stream_matches_reference(seed: int) -> None:
    run_stream(seed, 12_500)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_stream_matches_reference_long(seed: int) -> None:
    run_stream(seed, 50_000, accounts=2 + seed % 5)
