"""RevokeApiKey: the key is gone for GetApiKey and from snapshots (journal replay is proven
end to end, over a matcher restart); a second revocation is 3010 and changes nothing; the
account's other keys stay."""

from __future__ import annotations

from exchange.engine.core import Engine
from exchange.model.commands import CreateApiKey, RevokeApiKey
from exchange.model.events import ApiKeyRevoked, CommandRejected
from exchange.model.queries import ApiKeyInfo, GetApiKey, NotFound
from tests.exchange.conftest import CONFIG, Driver, business_hash


def _two_keys(ex: Driver) -> None:
    ex.do(CreateApiKey(account_id=1, api_key="k1", secret="s1"))
    ex.do(CreateApiKey(account_id=1, api_key="k2", secret="s2"))


def test_revoke_answers_with_the_key_and_its_account(ex: Driver) -> None:
    _two_keys(ex)
    events = ex.do(RevokeApiKey(api_key="k1"))
    assert events == [ApiKeyRevoked(seq=ex.seq, ts=ex.seq * 1000, account_id=1, api_key="k1")]
    assert ex.engine.answer(GetApiKey(api_key="k1")) == NotFound(code=2002)
    other = ex.engine.answer(GetApiKey(api_key="k2"))
    assert isinstance(other, ApiKeyInfo) and other.account_id == 1


def test_revoking_twice_is_3010_and_changes_nothing(ex: Driver) -> None:
    _two_keys(ex)
    ex.do(RevokeApiKey(api_key="k1"))
    before = business_hash(ex.engine)
    events = ex.do(RevokeApiKey(api_key="k1"))
    assert len(events) == 1
    assert isinstance(events[0], CommandRejected) and events[0].code == 3010
    assert business_hash(ex.engine) == before


def test_a_revoked_key_stays_revoked_after_restore(ex: Driver) -> None:
    _two_keys(ex)
    ex.do(RevokeApiKey(api_key="k1"))
    restored = Engine.restore(CONFIG, ex.engine.snapshot())
    assert restored.answer(GetApiKey(api_key="k1")) == NotFound(code=2002)
    assert isinstance(restored.answer(GetApiKey(api_key="k2")), ApiKeyInfo)
