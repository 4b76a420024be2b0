"""One redis-py connection driven by hand: the market-data publisher's and feed's.

Both use redis-py below its client layer (pool checkout, retry wrapper, observability and a
timer per call cost several times a small PUBLISH or pub/sub message). The pool only builds
connections from the URL (TCP, TLS or unix socket); each user holds one connection at a
time and reads and writes it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

CONNECT_TIMEOUT_S: Final = 1.0  # TCP connect
HANDSHAKE_TIMEOUT_S: Final = 3.0  # connect and PING


def connection_pool(url: str) -> aioredis.ConnectionPool:
    """A pool that builds RESP2 connections without retries or read timeouts.

    RESP2: replies and pub/sub messages are plain arrays and integers, no HELLO, no push
    handling. No retries inside redis-py: a silent reconnect would hide lost publishes or a
    lost stretch of messages, and both users must see every loss. No timer per read: the
    publisher has its own watchdog, and the feed waits for the next message however long.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": None,
        "retry": Retry(NoBackoff(), 0),
        "protocol": 2,
        # RESP3-only; redis-py refuses it on RESP2 without hiredis.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    pool = aioredis.ConnectionPool.from_url(url, **options)
    pool.connection_kwargs.update(options)  # over what the URL's query says
    return pool


async def open_connection(pool: aioredis.ConnectionPool) -> Connection:
    """A new connection that has answered a PING, within HANDSHAKE_TIMEOUT_S."""
    conn: Connection = pool.make_connection()  # type: ignore[no-untyped-call]
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("PING")
            await conn.read_response()
    except BaseException:
        await close_connection(conn)
        raise
    return conn


async def close_connection(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.disconnect(nowait=True)
