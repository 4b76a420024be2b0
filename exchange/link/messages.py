"""Frames of the gateway <-> matcher link.

Each frame on the wire is a 4-byte big-endian length followed by one msgpack-encoded
`LinkMessage` (see `exchange.link.codec`). A frame longer than the bound closes the link.

Conversation:
  matcher -> gateway: Challenge (a fresh nonce, see exchange.link.auth)
  gateway -> matcher: Hello (with the proof of the link token), then any of Submit, Ask,
                      Interest, SessionOpened, SessionClosed, MdSubscribe, MdUnsubscribe,
                      Heartbeat
  matcher -> gateway: Welcome, then any of Result, Refused, Answer, Reports, MarketData,
                      KeyRevoked, KeyLimitsChanged, Instruments, Heartbeat

- Submit(req_id, command) is journaled and answered by Result(req_id, seq, events) holding
  every event of that command, after the journal fsync. Refused(req_id, code) answers a
  command that was not sequenced at all (matcher stopping, halted on a disk error...).
- Ask(req_id, query) is answered from memory by Answer(req_id, result), never journaled.
- Order events for accounts that *another* gateway registered with Interest reach that
  gateway as Reports; the submitting gateway finds them in its Result.
- SessionOpened with cancel_on_disconnect != "none" lets the matcher cancel that session's
  (or account's) orders through the journal if the gateway's link drops.
- Welcome carries the live assets and instruments (the engine's, not a config file's);
  Instruments carries them again, to every gateway, once a command that changed them
  (ListAsset, ListInstrument, UpdateInstrument) is journaled.
- MarketData carries the opaque per-symbol market-data batch (the same bytes that go to
  Redis when Redis is used), for symbols the gateway subscribed with MdSubscribe.
- KeyRevoked and KeyLimitsChanged go to every welcomed gateway after the journal fsync of
  the RevokeApiKey / SetKeyLimits: sessions of that key are closed or get its new limits.
- Heartbeat both ways every HEARTBEAT_INTERVAL_S; silence for LINK_TIMEOUT_S ends the link.
"""

from __future__ import annotations

import msgspec

from exchange.model.commands import Command
from exchange.model.events import Event, OrderEvent
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import Query, QueryResult
from exchange.model.sessions import CancelOnDisconnect

# 2: the matcher challenges first and Hello carries the proof (exchange.link.auth).
PROTOCOL_VERSION = 2
HEARTBEAT_INTERVAL_S = 1.0
LINK_TIMEOUT_S = 5.0
MAX_FRAME_BYTES = 8 * 1024 * 1024


class _Msg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="t"):
    pass


class Challenge(_Msg, tag="challenge", kw_only=True, frozen=True):
    nonce: bytes


class Hello(_Msg, tag="hello", kw_only=True, frozen=True):
    gateway_id: str
    version: int = PROTOCOL_VERSION
    # HMAC of the Challenge's nonce with the link token (exchange.link.auth); b"" without one.
    proof: bytes = b""


class Welcome(_Msg, tag="welcome", kw_only=True, frozen=True):
    matcher_id: str
    version: int
    config: ExchangeConfig
    symbols: list[str]  # the shard this matcher owns
    last_seq: int


class Heartbeat(_Msg, tag="hb", kw_only=True, frozen=True):
    ts: int


class Submit(_Msg, tag="submit", kw_only=True, frozen=True):
    req_id: int
    command: Command


class Result(_Msg, tag="result", kw_only=True, frozen=True):
    req_id: int
    seq: int
    events: list[Event]


class Refused(_Msg, tag="refused", kw_only=True, frozen=True):
    req_id: int
    code: int
    reason: str


class Ask(_Msg, tag="ask", kw_only=True, frozen=True):
    req_id: int
    query: Query


class Answer(_Msg, tag="answer", kw_only=True, frozen=True):
    req_id: int
    result: QueryResult


class Interest(_Msg, tag="interest", kw_only=True, frozen=True):
    add: list[int] = []
    remove: list[int] = []


class Reports(_Msg, tag="reports", kw_only=True, frozen=True):
    events: list[OrderEvent]


class SessionOpened(_Msg, tag="session_opened", kw_only=True, frozen=True):
    session_id: str
    account_id: int
    cancel_on_disconnect: CancelOnDisconnect


class SessionClosed(_Msg, tag="session_closed", kw_only=True, frozen=True):
    session_id: str


class KeyRevoked(_Msg, tag="key_revoked", kw_only=True, frozen=True):
    """Pushed to every gateway once a RevokeApiKey is journaled: close the key's sessions and
    forget it."""

    api_key: str


class Instruments(_Msg, tag="instruments", kw_only=True, frozen=True):
    """Pushed to every gateway once a listing command is journaled: the whole live set of
    assets and instruments, which replaces the gateway's."""

    config: ExchangeConfig
    symbols: list[str]  # the shard this matcher owns, as in Welcome


class KeyLimitsChanged(_Msg, tag="key_limits", kw_only=True, frozen=True):
    """Pushed to every gateway once a SetKeyLimits is journaled: the key's order bucket and
    its connections' request buckets take the new limits at once (0: the gateway's default),
    and the key's cached record is dropped."""

    api_key: str
    orders_limit: int
    requests_limit: int


class MdSubscribe(_Msg, tag="md_sub", kw_only=True, frozen=True):
    symbols: list[str]


class MdUnsubscribe(_Msg, tag="md_unsub", kw_only=True, frozen=True):
    symbols: list[str]


class MarketData(_Msg, tag="md", kw_only=True, frozen=True):
    symbol: str
    payload: bytes


LinkMessage = (
    Challenge
    | Hello
    | Welcome
    | Heartbeat
    | Submit
    | Result
    | Refused
    | Ask
    | Answer
    | Interest
    | Reports
    | SessionOpened
    | SessionClosed
    | KeyRevoked
    | Instruments
    | KeyLimitsChanged
    | MdSubscribe
    | MdUnsubscribe
    | MarketData
)
