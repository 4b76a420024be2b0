"""The trading core on a KeyRevoked push, a logon bound just after one, and a link back up
after a loss (a push may have been missed): the right sessions closed, the key forgotten."""

from __future__ import annotations

from typing import Any

from exchange.model.instruments import load_config
from exchange.model.queries import ApiKeyInfo, GetApiKey, NotFound
from exchange.model.sessions import CancelOnDisconnect
from gateway.core.sessions import TradingSession
from gateway.core.trading import KEY_REVOKED, POLICY_VIOLATION, TradingCore
from gateway.metrics import GatewayMetrics
from tests.gateway.core.test_trading_core import RecordingLink
from tests.support.exchange_harness import limits, wait_until


class HandlerLink(RecordingLink):
    def __init__(self) -> None:
        super().__init__()
        self.on_revoked: Any = None
        self.on_state: Any = None

    def set_key_revoked_handler(self, handler: Any) -> None:
        self.on_revoked = handler

    def set_link_state_handler(self, handler: Any) -> None:
        self.on_state = handler


class Closing(TradingSession):
    def __init__(self) -> None:
        super().__init__()
        self.closed_with: tuple[str, int] | None = None

    def close(self, reason: str, code: int = 1000) -> None:
        self.closed_with = (reason, code)


def _info(api_key: str, account_id: int) -> ApiKeyInfo:
    return ApiKeyInfo(api_key=api_key, account_id=account_id, secret="s",
                      permissions=("trade", "read"))


def _logged_on(core: TradingCore, api_key: str, account_id: int) -> Closing:
    session = Closing()
    core.opened(session)
    core.bind(session, _info(api_key, account_id), CancelOnDisconnect.NONE)
    return session


def _core() -> tuple[TradingCore, HandlerLink]:
    link = HandlerLink()
    core = TradingCore(link, load_config(), limits(), GatewayMetrics())  # type: ignore[arg-type]
    return core, link


async def test_push_closes_only_that_keys_sessions_and_forgets_it() -> None:
    core, link = _core()
    first, second = _logged_on(core, "gone", 1), _logged_on(core, "gone", 1)
    other_key, other_account = _logged_on(core, "kept", 1), _logged_on(core, "k2", 2)
    core.keys.put(_info("gone", 1))
    core.keys.put(_info("kept", 1))
    link.on_revoked("gone")
    assert first.closed_with == second.closed_with == (KEY_REVOKED, POLICY_VIOLATION)
    assert other_key.closed_with is None and other_account.closed_with is None
    assert core.keys.get("gone") is None and core.keys.get("kept") is not None


async def test_a_logon_bound_after_the_push_is_closed() -> None:
    core, link = _core()
    link.on_revoked("gone")  # the logon had fetched the key just before
    late = _logged_on(core, "gone", 1)
    assert late.closed_with == (KEY_REVOKED, POLICY_VIOLATION)
    assert _logged_on(core, "kept", 1).closed_with is None


async def test_link_back_up_asks_again_for_open_sessions_keys() -> None:
    core, link = _core()
    revoked_meanwhile, kept = _logged_on(core, "gone", 1), _logged_on(core, "kept", 2)
    core.keys.put(_info("kept", 2))
    link.on_state(False)
    assert link.asked == []
    link.on_state(True)
    assert len(core.keys) == 0  # every key is fetched afresh
    await wait_until(lambda: len(link.asked) == 1, 5)
    query, answer = link.asked[0]
    assert query == GetApiKey(api_key="gone")
    answer.set_result(NotFound(code=2002))
    await wait_until(lambda: len(link.asked) == 2, 5)
    query, answer = link.asked[1]
    assert query == GetApiKey(api_key="kept")
    answer.set_result(_info("kept", 2))
    await wait_until(lambda: revoked_meanwhile.closed_with is not None, 5)
    assert revoked_meanwhile.closed_with == (KEY_REVOKED, POLICY_VIOLATION)
    await core.drain(5)  # the check of "kept" has finished: nothing to close
    assert kept.closed_with is None
