"""Logon: HMAC-SHA256 signatures, the timestamp window, replay protection and the key cache.

Every failure is the same answer (2002) so a prober learns nothing about which part was
wrong. Memory is bounded: nonces live only as long as the timestamp window, with a hard cap,
and the key cache is a small LRU with a time to live.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

from exchange import credentials
from exchange.model.queries import ApiKeyInfo

WINDOW_MS = 5_000


def logon_payload(timestamp: int | str, nonce: str, api_key: str) -> bytes:
    # FIX signs SendingTime(52) as sent (a string); the WebSocket signs milliseconds.
    return f"{timestamp}\n{nonce}\nlogon\n{api_key}".encode()


def sign_logon(secret: str, timestamp: int | str, nonce: str, api_key: str) -> str:
    """Lowercase hex HMAC_SHA256(secret, f"{timestamp}\\n{nonce}\\nlogon\\n{api_key}")."""
    return hmac.new(secret.encode(), logon_payload(timestamp, nonce, api_key),
                    hashlib.sha256).hexdigest()


def signature_ok(secret: str | None, timestamp: int | str, nonce: str, api_key: str,
                 signature: str) -> bool:
    """`secret` is the key's stored record: a sealed HMAC secret (opened with the process's
    key ring), an Ed25519 public key, or a clear secret from an older version; None for an
    unknown key, checked against a dummy secret so that it costs the same and fails."""
    return credentials.verify(secret, api_key, logon_payload(timestamp, nonce, api_key),
                              signature, credentials.process_key_ring())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class NonceCache:
    """Remembers (api_key, nonce) for as long as a timestamp carrying it could be accepted.

    A nonce seen within the window is refused. Entries older than twice the window can never
    be replayed (their timestamp is stale by then) and are dropped. When the cap is reached,
    new logons are refused (2002) rather than forgetting nonces that could still be replayed.
    """

    def __init__(self, window_ms: int = WINDOW_MS, max_entries: int = 100_000,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._clock = clock_ms
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()  # insertion = time order

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: int) -> None:
        horizon = now - 2 * self.window_ms
        seen = self._seen
        while seen:
            key, at = next(iter(seen.items()))
            if at >= horizon:
                break
            del seen[key]

    def use(self, api_key: str, nonce: str) -> bool:
        """True the first time (and records it); False for a replay or when full."""
        now = self._clock()
        self._expire(now)
        key = (api_key, nonce)
        if key in self._seen or len(self._seen) >= self.max_entries:
            return False
        self._seen[key] = now
        return True


class KeyCache:
    """LRU of API key records fetched from the matcher, each kept for `ttl_s`.

    Only found keys are cached: an unknown key is asked again (keys are created at any time).
    """

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, ApiKeyInfo]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, api_key: str) -> ApiKeyInfo | None:
        entry = self._entries.get(api_key)
        if entry is None:
            return None
        at, info = entry
        if self._clock() - at > self.ttl_s:
            del self._entries[api_key]
            return None
        self._entries.move_to_end(api_key)
        return info

    def drop(self, api_key: str) -> None:
        self._entries.pop(api_key, None)

    def clear(self) -> None:
        self._entries.clear()

    def put(self, info: ApiKeyInfo) -> None:
        self._entries[info.api_key] = (self._clock(), info)
        self._entries.move_to_end(info.api_key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class UnknownKeys:
    """API keys the matcher said it does not know, each remembered for `ttl_s` (bounded)."""

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, float] = OrderedDict()

    def known_unknown(self, api_key: str) -> bool:
        at = self._entries.get(api_key)
        if at is None:
            return False
        if self._clock() - at > self.ttl_s:
            del self._entries[api_key]
            return False
        return True

    def add(self, api_key: str) -> None:
        self._entries[api_key] = self._clock()
        self._entries.move_to_end(api_key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RevokedKeys:
    """API keys the matcher said were revoked, newest kept (bounded): a logon that fetched its
    key just before the revocation reached this gateway is closed as soon as it binds.
    Revocation is for good, so no time to live."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._entries

    def add(self, api_key: str) -> None:
        self._entries[api_key] = None
        self._entries.move_to_end(api_key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class SharedNonces:
    """Nonces seen by any gateway process, in Redis (SET NX with a time to live).

    Several gateway processes serve one port, so a logon captured on one could be replayed on
    another within the window; with Redis configured each nonce is claimed once across all of
    them. Redis is best effort here: when it does not answer within `timeout_s`, `claim`
    returns None and the caller relies on its own NonceCache (logons keep working).
    """

    PREFIX = "exchange:logon-nonce:"

    def __init__(self, redis_url: str, window_ms: int = WINDOW_MS, timeout_s: float = 0.5
                 ) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.ttl_ms = 2 * window_ms
        self.timeout_s = timeout_s

    async def claim(self, api_key: str, nonce: str) -> bool | None:
        """True if this is the first use anywhere, False for a replay, None if unknown."""
        import redis.exceptions

        digest = hashlib.sha256(logon_payload(0, nonce, api_key)).hexdigest()
        key = self.PREFIX + digest
        try:
            async with asyncio.timeout(self.timeout_s):
                first = await self._redis.set(key, b"1", nx=True, px=self.ttl_ms)
        except (TimeoutError, OSError, redis.exceptions.RedisError):
            return None
        return bool(first)

    async def close(self) -> None:
        await self._redis.aclose()


def timestamp_fresh(timestamp_ms: int, now: int, window_ms: int = WINDOW_MS) -> bool:
    return abs(now - timestamp_ms) <= window_ms
