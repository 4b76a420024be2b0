"""One timer for many same-length request timeouts (gateway/core/deadlines.py)."""

from __future__ import annotations

import asyncio

from gateway.core.deadlines import Deadlines


class Item:
    def __init__(self, name: str, deadline: float, fired: list[str]) -> None:
        self.name = name
        self.deadline = deadline
        self.answered = False
        self._fired = fired

    def timeout(self) -> None:
        self.answered = True
        self._fired.append(self.name)


async def test_unanswered_items_time_out_in_order_and_answered_ones_never() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    deadlines = Deadlines()
    now = loop.time()
    items = [Item(name, now + 0.05 * (i + 1), fired) for i, name in enumerate("abcd")]
    for item in items:
        deadlines.add(item)
    items[1].answered = True  # b was answered in time
    done = loop.create_future()
    loop.call_at(now + 0.3, done.set_result, None)
    await done
    assert fired == ["a", "c", "d"]
    assert len(deadlines) == 0
    for item in items:
        if item.name != "b":
            assert loop.time() >= item.deadline


async def test_answered_items_leave_the_fifo_as_new_ones_come() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    deadlines = Deadlines()
    for i in range(1000):
        item = Item(str(i), loop.time() + 60, fired)
        deadlines.add(item)
        item.answered = True  # answered before the next request arrives
    assert len(deadlines) == 1  # only the last one: bounded by what is in flight
    deadlines.close()
    assert fired == []
