"""The matching engine: a pure, deterministic function of (state, command) to events.

No I/O, clock or randomness: `seq` and `ts` come in with each command, ids are counters in
the state. Business outcomes are result codes carried by events; exceptions mean a bug or a
caller breaking the contract (a non-increasing `seq`). Semantics and the event order within a
command are written down in docs/ENGINE.md.

`Engine` is the state (`base.EngineBase`) with one mixin per purpose: placing, cancel and
amend (with stop orders in `stops`), operator commands, listing (assets and instruments),
queries, snapshots and the invariant check.
"""

from __future__ import annotations

from exchange.engine.admin import Admin
from exchange.engine.amending import Amending
from exchange.engine.invariants import Invariants
from exchange.engine.listing import Listing
from exchange.engine.placing import Placing
from exchange.engine.queries import Queries
from exchange.engine.snapshot import Snapshots
from exchange.model.codes import Code
from exchange.model.commands import (
    MAX_BATCH,
    AmendOrder,
    Batch,
    CancelAll,
    CancelOrder,
    Command,
    CreateAccount,
    CreateApiKey,
    Deposit,
    HaltSymbol,
    ListAsset,
    ListInstrument,
    PlaceOrder,
    ResumeSymbol,
    RevokeApiKey,
    SetKeyLimits,
    UpdateInstrument,
    Withdraw,
)
from exchange.model.events import CommandRejected, Event

_INVALID = int(Code.INVALID_VALUE)


class Engine(Placing, Amending, Admin, Listing, Queries, Snapshots, Invariants):
    def apply(self, command: Command, seq: int, ts: int) -> list[Event]:
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} is not after {self.last_seq}")
        self.last_seq = seq
        kind = type(command)
        if kind is PlaceOrder:
            return self._place(command, seq, ts)  # type: ignore[arg-type]
        if kind is CancelOrder:
            return self._cancel(command, seq, ts)  # type: ignore[arg-type]
        if kind is AmendOrder:
            return self._amend(command, seq, ts)  # type: ignore[arg-type]
        match command:
            case CancelAll():
                return self._cancel_all(command, seq, ts)
            case CreateAccount():
                return self._create_account(command, seq, ts)
            case CreateApiKey():
                return self._create_api_key(command, seq, ts)
            case RevokeApiKey():
                return self._revoke_api_key(command, seq, ts)
            case SetKeyLimits():
                return self._set_key_limits(command, seq, ts)
            case Deposit():
                return self._deposit(command, seq, ts)
            case Withdraw():
                return self._withdraw(command, seq, ts)
            case HaltSymbol() | ResumeSymbol():
                return self._halt(command, seq, ts)
            case Batch():
                return self._batch(command, seq, ts)
            case ListAsset():
                return self._list_asset(command, seq, ts)
            case ListInstrument():
                return self._list_instrument(command, seq, ts)
            case UpdateInstrument():
                return self._update_instrument(command, seq, ts)
        raise TypeError(f"not a command: {command!r}")

    def _batch(self, c: Batch, seq: int, ts: int) -> list[Event]:
        """Each command in turn, as if alone but under one seq; the first event of each
        answers it (OrderAccepted/OrderRejected, OrderCanceled/CancelRejected)."""
        if not c.commands or len(c.commands) > MAX_BATCH:
            return [CommandRejected(seq=seq, ts=ts, code=_INVALID, reason="invalid field value")]
        events: list[Event] = []
        for item in c.commands:
            if type(item) is PlaceOrder:
                events += self._place(item, seq, ts)
            else:
                events += self._cancel(item, seq, ts)  # type: ignore[arg-type]
        return events
