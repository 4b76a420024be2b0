"""A failed fsync or a full disk: no further acks, the matcher stops non-zero without retrying,
and a restart loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange.matcher.engine_port import default_factory
from exchange.matcher.loop import MatcherOptions
from exchange.matcher.main import open_matcher
from exchange.matcher.recovery import recover
from exchange.model.events import Event
from exchange.model.instruments import load_config
from tests.support.matcher_harness import Load, short_socket_path


def failing_after(real: Callable[..., Any], calls: int, err: int,
                  only_fd: Callable[[int], bool]) -> Callable[..., Any]:
    state = {"n": 0, "failed": 0}

    def wrapper(fd: int, *args: Any) -> Any:
        if only_fd(fd):
            state["n"] += 1
            if state["n"] > calls:
                state["failed"] += 1
                raise OSError(err, os.strerror(err))
        return real(fd, *args)

    wrapper.state = state  # type: ignore[attr-defined]
    return wrapper


@pytest.mark.parametrize("failure", ["fdatasync_eio", "write_enospc"])
async def test_journal_failure_stops_without_acking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    config = load_config()
    matcher = open_matcher(data, config, default_factory(),
                           options=MatcherOptions(snapshot_every=10**9))
    journal_fd = matcher.journal._fd

    def is_journal(fd: int) -> bool:
        return fd == journal_fd

    if failure == "fdatasync_eio":
        broken = failing_after(os.fdatasync, 40, errno.EIO, is_journal)
        monkeypatch.setattr(os, "fdatasync", broken)
    else:
        broken = failing_after(os.write, 40, errno.ENOSPC, is_journal)
        monkeypatch.setattr(os, "write", broken)
    sock = short_socket_path()
    matcher.ready = asyncio.Event()
    task = asyncio.create_task(matcher.run(f"unix:{sock}"))
    await asyncio.wait_for(matcher.ready.wait(), 10)
    load = Load(config, connections=2, window=16, seed=5)
    await load.run_setup(f"unix:{sock}")
    await load.start(f"unix:{sock}")
    code = await asyncio.wait_for(task, 30)
    await load.wait_links_down()
    assert code == 2
    assert broken.state["failed"] == 1  # type: ignore[attr-defined]  # never retried
    acked_max = max(load.acked)
    assert load.failed > 0  # commands in flight learned "outcome unknown" (LinkDown)
    # Only durable batches were answered: everything acked is within what was applied.
    assert acked_max <= matcher.engine.last_seq
    monkeypatch.undo()

    # Restart on the same directory: every acked command replays to its acked events.
    replayed: dict[int, list[Event]] = {}
    recovered = await asyncio.to_thread(recover, data, config, default_factory(),
                                        on_events=replayed.__setitem__)
    assert recovered.last_seq >= acked_max
    for seq, (_, events) in load.acked.items():
        assert replayed[seq] == events
