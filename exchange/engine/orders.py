"""Orders as the engine holds them, and the order state table.

An `Order` (the fields of `exchange.model.orders.OrderFields`) is mutable and lives in a
price level's intrusive FIFO (`prev`/`next`), so it is a msgspec Struct with `gc=False`:
the cyclic collector never scans the (possibly tens of thousands of) resting orders. The
engine breaks every link when an order leaves the book, so no cycle outlives it.
"""

from __future__ import annotations

from typing import Final

import msgspec

from exchange.model.events import OrdStatus
from exchange.model.orders import OrderFields


class InvalidStateTransition(RuntimeError):
    """An order event that the state table does not allow: an engine bug, never an outcome."""


# What happens to an order, as the state table sees it.
PARTIAL_FILL: Final = "partial_fill"
FILL: Final = "fill"
CANCEL: Final = "cancel"
EXPIRE: Final = "expire"
AMEND: Final = "amend"

# (status, event) -> status. An order is created "new" (OrderAccepted); rejected places never
# become orders. Terminal statuses (filled, canceled, expired) have no way out.
TRANSITIONS: Final[dict[tuple[str, str], OrdStatus]] = {
    ("new", PARTIAL_FILL): "partially_filled",
    ("new", FILL): "filled",
    ("new", CANCEL): "canceled",
    ("new", EXPIRE): "expired",
    ("new", AMEND): "new",
    ("partially_filled", PARTIAL_FILL): "partially_filled",
    ("partially_filled", FILL): "filled",
    ("partially_filled", CANCEL): "canceled",
    ("partially_filled", EXPIRE): "expired",
    ("partially_filled", AMEND): "partially_filled",
}

OPEN_STATUSES: Final = ("new", "partially_filled")

# Closed orders stay answerable to GetOrder in a ring of slots indexed by order id: an order
# closes into slot `order_id & CLOSED_MASK`, replacing whatever closed there before. One list
# store per close; no dict or queue upkeep on the hot path.
CLOSED_SLOTS: Final = 16_384
CLOSED_MASK: Final = CLOSED_SLOTS - 1


def transition(status: OrdStatus, event: str) -> OrdStatus:
    nxt = TRANSITIONS.get((status, event))
    if nxt is None:
        raise InvalidStateTransition(f"{event!r} is not allowed in status {status!r}")
    return nxt


class Level(msgspec.Struct, gc=False):
    """One price level: a FIFO of orders (intrusive doubly linked list) and its total lots."""

    price: int
    total: int = 0
    head: Order | None = None
    tail: Order | None = None


class Order(OrderFields):
    """A live order. Kept apart from the frozen `OrderRecord` and `OrderState` because it
    changes in place on every fill and carries the links of its level's FIFO, which neither
    a snapshot nor an answer may hold."""

    prev: Order | None = None
    next: Order | None = None
    level: Level | None = None


def _next_by_status(event: str) -> dict[str, OrdStatus]:
    return {s: nxt for (s, e), nxt in TRANSITIONS.items() if e == event}


# The same table split by event, for the hot path: `NEXT_ON_CANCEL.get(status)` is None
# exactly when `transition(status, CANCEL)` raises.
NEXT_ON_CANCEL: Final = _next_by_status(CANCEL)
NEXT_ON_FILL: Final = _next_by_status(FILL)
NEXT_ON_PARTIAL_FILL: Final = _next_by_status(PARTIAL_FILL)
NEXT_ON_AMEND: Final = _next_by_status(AMEND)
