"""Rate-limit tiers in the trading core: a bucket resized in place, a logon bound with its
key's limits, a KeyLimitsChanged push applied to live sessions (and winning over a key record
fetched before it), and a link back up asking again."""

from __future__ import annotations

from typing import Any

from exchange.link.messages import KeyLimitsChanged
from exchange.model.instruments import load_config
from exchange.model.queries import ApiKeyInfo, GetApiKey
from exchange.model.sessions import CancelOnDisconnect
from gateway.core.ratelimit import KeyTiers, RateLimit, TokenBucket
from gateway.core.sessions import TradingSession
from gateway.core.trading import TradingCore
from gateway.metrics import GatewayMetrics
from tests.gateway.core.test_trading_core import RecordingLink
from tests.support.exchange_harness import limits, wait_until

ORDERS = RateLimit(type="orders", limit=3, window_ms=60_000)
REQUESTS = RateLimit(type="requests", limit=40, window_ms=60_000)


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _takes(bucket: TokenBucket) -> int:
    """Tokens that can be taken right now (and are taken)."""
    n = 0
    while bucket.take() == 0:
        n += 1
    return n


def test_a_raised_limit_gives_its_extra_burst_at_once() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(type="orders", limit=3, window_ms=1_000), clock)
    assert _takes(bucket) == 3
    bucket.resize(RateLimit(type="orders", limit=10, window_ms=1_000))
    assert bucket.count() == 3  # the tokens in use carry over
    assert _takes(bucket) == 7
    clock.now += 100_000_000  # 0.1 s at the new rate: one token
    assert _takes(bucket) == 1


def test_a_lowered_limit_binds_at_once() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(type="orders", limit=10, window_ms=1_000), clock)
    assert bucket.take() == 0 and bucket.take() == 0
    bucket.resize(RateLimit(type="orders", limit=3, window_ms=1_000))
    assert bucket.wire() == {"type": "orders", "window_ms": 1_000, "limit": 3, "count": 2}
    assert _takes(bucket) == 1
    bucket.resize(RateLimit(type="orders", limit=1, window_ms=1_000))  # more in use than allowed
    assert bucket.count() == 1 and bucket.take() > 0


def test_resize_to_another_window_keeps_the_tokens_in_use() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(type="orders", limit=4, window_ms=1_000), clock)
    bucket.take()
    bucket.resize(RateLimit(type="orders", limit=4, window_ms=60_000))
    assert bucket.count() == 1 and _takes(bucket) == 3


def test_key_tiers_are_bounded_newest_kept() -> None:
    tiers = KeyTiers(max_entries=2)
    for i in range(3):
        tiers.put(f"k{i}", (i, i))
    assert len(tiers) == 2 and tiers.get("k0") is None and tiers.get("k2") == (2, 2)


class TierLink(RecordingLink):
    def __init__(self) -> None:
        super().__init__()
        self.on_limits: Any = None
        self.on_state: Any = None

    def set_key_limits_handler(self, handler: Any) -> None:
        self.on_limits = handler

    def set_link_state_handler(self, handler: Any) -> None:
        self.on_state = handler


class Session(TradingSession):
    def __init__(self) -> None:
        super().__init__()
        self.requests_bucket = TokenBucket(REQUESTS)

    def set_requests_limit(self, spec: RateLimit) -> None:
        self.requests_bucket.resize(spec)

    def close(self, reason: str, code: int = 1000) -> None:
        pass


def _info(api_key: str, orders_limit: int = 0, requests_limit: int = 0) -> ApiKeyInfo:
    return ApiKeyInfo(api_key=api_key, account_id=1, secret="s", permissions=("trade", "read"),
                      orders_limit=orders_limit, requests_limit=requests_limit)


def _core() -> tuple[TradingCore, TierLink]:
    link = TierLink()
    core = TradingCore(link, load_config(), limits(orders=ORDERS, requests=REQUESTS),  # type: ignore[arg-type]
                       GatewayMetrics())
    return core, link


def _bound(core: TradingCore, info: ApiKeyInfo) -> Session:
    session = Session()
    core.opened(session)
    core.bind(session, info, CancelOnDisconnect.NONE)
    return session


def _limits(session: Session) -> tuple[int, int]:
    assert session.orders_bucket is not None
    return session.orders_bucket.spec.limit, session.requests_bucket.spec.limit


async def test_logon_takes_the_keys_tier_or_the_gateways_default() -> None:
    core, _ = _core()
    assert _limits(_bound(core, _info("plain"))) == (3, 40)
    maker = _bound(core, _info("maker", orders_limit=50, requests_limit=400))
    assert _limits(maker) == (50, 400)
    assert maker.orders_bucket is not None and maker.orders_bucket.spec.window_ms == 60_000
    # A second session of the key shares its order bucket.
    assert _bound(core, _info("maker", 50, 400)).orders_bucket is maker.orders_bucket


async def test_a_push_changes_live_sessions_of_that_key_only() -> None:
    core, link = _core()
    first, second = _bound(core, _info("k", 50)), _bound(core, _info("k", 50))
    other = _bound(core, _info("other", 50))
    core.keys.put(_info("k", 50))
    link.on_limits(KeyLimitsChanged(api_key="k", orders_limit=5, requests_limit=7))
    assert _limits(first) == _limits(second) == (5, 7)
    assert _limits(other) == (50, 40)
    assert core.keys.get("k") is None  # the cached record held the old tier
    link.on_limits(KeyLimitsChanged(api_key="k", orders_limit=0, requests_limit=0))
    assert _limits(first) == (3, 40)  # back to the gateway's default


async def test_a_logon_bound_after_a_push_takes_the_pushed_tier() -> None:
    core, link = _core()
    link.on_limits(KeyLimitsChanged(api_key="k", orders_limit=9, requests_limit=0))
    # The logon fetched the key's record before the push: the push is newer.
    assert _limits(_bound(core, _info("k", orders_limit=50))) == (9, 40)


async def test_link_back_up_forgets_pushes_and_asks_for_open_sessions_tiers() -> None:
    core, link = _core()
    live = _bound(core, _info("k", 50))
    link.on_limits(KeyLimitsChanged(api_key="gone-by", orders_limit=9, requests_limit=0))
    link.on_state(True)
    # A change missed while the link was down comes with the fresh record.
    await wait_until(lambda: bool(link.asked))
    query, fut = link.asked[0]
    assert query == GetApiKey(api_key="k")
    fut.set_result(_info("k", orders_limit=20, requests_limit=100))
    await wait_until(lambda: _limits(live) == (20, 100))
    # A pushed tier from before the loss no longer wins over a fresh record.
    assert _limits(_bound(core, _info("gone-by", 11))) == (11, 40)
