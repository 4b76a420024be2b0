"""Listing through the matcher: the commands are journaled, gateways are told the new set
after the fsync, and a restart (journal replay, or snapshot) rebuilds the same live set and
state from the original config, which the parameter record still accepts."""

from __future__ import annotations

from pathlib import Path

from exchange.link import listing_ops
from exchange.link.client import LinkClient
from exchange.link.messages import Welcome
from exchange.matcher.engine_port import default_factory
from exchange.matcher.loop import MatcherOptions
from exchange.matcher.params import check_or_record
from exchange.matcher.recovery import recover
from exchange.model.commands import CreateAccount, Deposit, PlaceOrder
from exchange.model.instruments import load_config
from tests.support.matcher_harness import inprocess_matcher, wait_until

JOURNAL_ONLY = MatcherOptions(snapshot_every=10**9, snapshot_interval_s=3600,
                              snapshot_on_stop=False)
SOL: dict[str, object] = {
    "symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tick_size": "0.01",
    "lot_size": "0.01", "min_qty": "0.01", "max_qty": "10000", "price_band_pct": 10,
    "maker_fee_bps": 10, "taker_fee_bps": 20, "reference_price": "150.00",
}


async def list_and_trade(address: str) -> None:
    pushed: list[Welcome] = []
    watcher = await LinkClient.connect(address, "watcher")
    watcher.on_instruments = pushed.append
    admin = await LinkClient.connect(address, "admin")
    try:
        await listing_ops.list_asset(admin, "SOL", 9)
        await listing_ops.list_instrument(admin, dict(SOL))
        await listing_ops.update_instrument(admin, "SOL-USD",
                                            {"price_band_pct": 4, "taker_fee_bps": 30})
        # Every other link is told, in order, with the whole set each time.
        await wait_until(lambda: len(pushed) == 3, 5)
        assert "SOL" in pushed[0].config.assets and "SOL-USD" not in pushed[0].symbols
        assert "SOL-USD" in pushed[1].symbols
        assert pushed[2].config.instruments["SOL-USD"].price_band_pct == 4
        assert watcher.welcome.config.instruments["SOL-USD"].taker_fee_bps == 30
        for command in (
            CreateAccount(label="a"), CreateAccount(label="b"),
            Deposit(account_id=1, asset="SOL", amount=10 * 10**9),
            Deposit(account_id=2, asset="USD", amount=10_000 * 10**6),
            PlaceOrder(account_id=1, symbol="SOL-USD", side="sell", order_type="limit",
                       qty=300, price=15_000, client_order_id="s"),
            PlaceOrder(account_id=2, symbol="SOL-USD", side="buy", order_type="limit",
                       qty=100, price=15_100, client_order_id="b"),
        ):
            outcome = await admin.submit(command)
            assert type(outcome.events[0]).__name__ not in ("CommandRejected", "OrderRejected")
    finally:
        await admin.close()
        await watcher.close()


async def test_replay_and_snapshot_rebuild_the_listed_state(tmp_path: Path) -> None:
    data = tmp_path / "d"
    config = load_config()
    data.mkdir()
    check_or_record(data, config)
    async with inprocess_matcher(data, factory=default_factory(), options=JOURNAL_ONLY) as (
            matcher, address):
        await list_and_trade(address)
        live_hash = matcher.engine.state_hash()
        live_config = matcher.engine.config
        assert matcher.welcome().config.instruments["SOL-USD"].price_band_pct == 4
        snapshot = matcher.engine.snapshot()

    # The original config is still the one the directory was started with.
    check_or_record(data, config)
    replayed = recover(data, config, default_factory(), use_snapshots=False)
    assert replayed.replayed == replayed.last_seq > 0
    assert replayed.engine.state_hash() == live_hash
    assert replayed.engine.config == live_config
    restored = default_factory().restore(config, snapshot)
    assert restored.state_hash() == live_hash and restored.config == live_config
