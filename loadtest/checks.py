"""What the generator checks in what it sees, and the violations it reports.

- every response matches exactly one outstanding request (no unknown or duplicate ids), and
  every request gets its response before the run ends;
- execution-report `seq` is contiguous per session;
- no trade report for an order after a report that it was canceled (or otherwise done);
- book checksums and per-symbol book sequences of the market-data feed (see `book.py`).

Violations are counted by kind; the first few of each kind are kept as examples (bounded).
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

MAX_EXAMPLES = 5
# Terminal orders remembered per session, to catch a fill arriving after the order is done.
MAX_TERMINAL_REMEMBERED = 200_000

UNMATCHED_ACK = "unmatched_ack"
MISSING_ACK = "missing_ack"
EXEC_SEQ_GAP = "exec_seq_gap"
FILL_AFTER_DONE = "fill_after_done"
BOOK_CHECKSUM = "book_checksum"
BOOK_SEQ_GAP = "book_seq_gap"
MD_SLOW_CONSUMER = "md_slow_consumer"
MD_CLOSED = "md_closed_early"
SESSION_CLOSED = "session_closed_early"
UNDECODABLE = "undecodable_message"

TERMINAL_STATUSES = frozenset({"canceled", "filled", "rejected", "expired"})


class Violations(msgspec.Struct):
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    examples: dict[str, list[str]] = msgspec.field(default_factory=dict)

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(detail)

    def merge(self, other: Violations) -> None:
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
            ex = self.examples.setdefault(kind, [])
            ex.extend(other.examples.get(kind, [])[: MAX_EXAMPLES - len(ex)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SessionChecker:
    """The per-session checks on the trading connection."""

    def __init__(self, name: str, violations: Violations) -> None:
        self.name = name
        self.v = violations
        self.last_seq: int | None = None
        # order key -> final status, insertion-ordered so the oldest are forgotten first.
        self.done: OrderedDict[str, str] = OrderedDict()
        # client_order_ids that had a trade: a cancel/amend refused for them lost a race.
        self.traded: set[str] = set()
        self.reports = 0

    def on_exec(
        self, seq: int | None, order_key: str, exec_type: str | None, ord_status: str | None
    ) -> None:
        self.reports += 1
        if seq is None:
            self.v.add(EXEC_SEQ_GAP, f"{self.name}: execution report without seq")
        elif self.last_seq is not None and seq != self.last_seq + 1:
            self.v.add(EXEC_SEQ_GAP, f"{self.name}: seq {seq} after {self.last_seq}")
        if seq is not None:
            self.last_seq = seq
        if exec_type == "trade":
            self.traded.add(order_key)
            final = self.done.get(order_key)
            if final is not None:
                self.v.add(FILL_AFTER_DONE, f"{self.name}: trade for {order_key} after {final}")
        if ord_status in TERMINAL_STATUSES:
            self.done[order_key] = ord_status
            if len(self.done) > MAX_TERMINAL_REMEMBERED:
                self.done.popitem(last=False)


class AckTracker:
    """Outstanding requests of one session, by request id."""

    def __init__(self, name: str, violations: Violations) -> None:
        self.name = name
        self.v = violations
        self.pending: dict[int, object] = {}
        # Requests given up on at the end of the run; their late answers are not "unmatched".
        self.abandoned: set[int] = set()
        self.late = 0

    def sent(self, req_id: int, info: object) -> None:
        self.pending[req_id] = info

    def answered(self, req_id: object) -> object | None:
        """The request's info, or None (and a violation) if the id is not outstanding."""
        info = self.pending.pop(req_id, None) if isinstance(req_id, int) else None
        if info is None and req_id in self.abandoned:
            self.abandoned.discard(req_id)
            self.late += 1
            return None
        if info is None:
            self.v.add(UNMATCHED_ACK, f"{self.name}: response id {req_id!r} matches no request")
        return info

    def finish(self) -> int:
        """At the end of the run: every request still outstanding is a violation."""
        missing = len(self.pending)
        for req_id in list(self.pending)[:MAX_EXAMPLES]:
            self.v.add(MISSING_ACK, f"{self.name}: no response to request {req_id}")
        if missing > MAX_EXAMPLES:
            self.v.counts[MISSING_ACK] = self.v.counts.get(MISSING_ACK, 0) + missing - MAX_EXAMPLES
        self.abandoned.update(self.pending)
        self.pending.clear()
        return missing

