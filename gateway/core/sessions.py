"""Trading sessions as the core sees them, whatever their transport, and their registry.

A `TradingSession` is what logon fills in (account, key, permissions, the key's order
bucket, cancel-on-disconnect) and what the core needs to push execution reports to it and
close it. The WebSocket session (gateway/ws/session.py) and the FIX connection
(gateway/fix/server.py) are both one.

`SessionRegistry` finds the sessions of an account for report fan-out and counts connections
in total and per API key.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import defaultdict
from collections.abc import Sequence

from exchange.model.events import ORDER_EVENTS, OrderEvent
from exchange.model.instruments import ExchangeConfig
from exchange.model.sessions import CancelOnDisconnect
from gateway.core.ratelimit import RateLimit, TokenBucket

_PREFIX = os.urandom(3).hex()
_COUNTER = itertools.count(1)


def new_session_id() -> str:
    """Unique across gateway processes (random prefix) and cheap (counter)."""
    return f"{_PREFIX}-{next(_COUNTER)}"


class TradingSession:
    """One trading session of any transport; logged on once `account_id` is set."""

    # Whether the core's idle deadline applies (a FIX session keeps its own, from HeartBtInt).
    idle_by_core = True

    def __init__(self, peer: str = "") -> None:
        self.session_id = new_session_id()
        self.peer = peer  # the client's address: failed logons are throttled per address
        # Event-loop times: the logon deadline runs from `opened_at`, the idle one from
        # `last_rx`, which the transport moves on every message it receives.
        self.opened_at = self.last_rx = asyncio.get_running_loop().time()
        self.account_id: int | None = None
        self.api_key: str | None = None
        self.permissions: tuple[str, ...] = ()
        self.orders_bucket: TokenBucket | None = None  # the API key's, shared by its sessions
        self.cancel_on_disconnect = CancelOnDisconnect.NONE

    @property
    def logged_on(self) -> bool:
        return self.account_id is not None

    def set_requests_limit(self, spec: RateLimit) -> None:
        """The key's per-connection request limit (its tier), at logon and when it changes.
        A transport without a request bucket of its own (FIX) has nothing to change."""

    def push_report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        """Send the execution report of one order event of this session's account."""
        raise NotImplementedError

    def close(self, reason: str, code: int = 1000) -> None:
        """Close from the gateway's side (`code` is a WebSocket close code)."""
        raise NotImplementedError


class SessionRegistry:
    def __init__(self) -> None:
        self.all: set[TradingSession] = set()
        self.by_account: dict[int, set[TradingSession]] = defaultdict(set)
        self.per_key: dict[str, int] = defaultdict(int)
        self.logged_on_count = 0

    def __len__(self) -> int:
        return len(self.all)

    def add(self, session: TradingSession) -> None:
        self.all.add(session)

    def logged_on(self, session: TradingSession) -> None:
        assert session.account_id is not None and session.api_key is not None
        sessions = self.by_account[session.account_id]
        if session not in sessions:
            self.logged_on_count += 1
        sessions.add(session)
        self.per_key[session.api_key] += 1

    def remove(self, session: TradingSession) -> None:
        self.all.discard(session)
        if session.account_id is not None:
            sessions = self.by_account.get(session.account_id)
            if sessions is not None:
                if session in sessions:
                    self.logged_on_count -= 1
                sessions.discard(session)
                if not sessions:
                    del self.by_account[session.account_id]
        if session.api_key is not None and session.account_id is not None:
            self.per_key[session.api_key] -= 1
            if self.per_key[session.api_key] <= 0:
                del self.per_key[session.api_key]

    def deliver(self, config: ExchangeConfig, events: Sequence[object]) -> None:
        """Push every order event to each local session of its account, in order."""
        by_account = self.by_account
        for event in events:
            if not isinstance(event, ORDER_EVENTS):
                continue
            sessions = by_account.get(event.account_id)
            if sessions:
                for session in list(sessions):
                    session.push_report(config, event)
