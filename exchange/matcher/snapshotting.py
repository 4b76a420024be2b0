"""When and how the matcher snapshots its engine.

A snapshot is due every `every` commands or `interval_s` seconds, whichever comes first. Like
Redis' BGSAVE, a forked child serializes its copy-on-write view of the engine and writes the
file, so matching stalls only for the fork itself; if the fork fails (no memory, process
limit) the engine is serialized on the event loop instead and written by a thread. Once a
snapshot is on disk the two newest are kept and the journal they cover is pruned.

A failed snapshot is not fatal: the journal still holds everything, only start-up gets slower.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from exchange.journal.log import Journal
from exchange.journal.snapshots import SnapshotStore, snapshot_name
from exchange.matcher.engine_port import EngineLike
from exchange.matcher.metrics import SNAPSHOT_FAILURES, SNAPSHOT_SECONDS, SNAPSHOT_STALL_SECONDS

log = structlog.get_logger("exchange.matcher.snapshotting")

_MAX_FD = os.sysconf("SC_OPEN_MAX")


class Snapshotter:
    def __init__(
        self,
        *,
        engine: EngineLike,
        snapshots: SnapshotStore,
        journal: Journal,
        journal_exec: ThreadPoolExecutor,
        snapshot_seq: int,
        every: int,
        interval_s: float,
        fork: bool,
        prune_journal: bool,
    ) -> None:
        self.engine = engine
        self.snapshots = snapshots
        self.journal = journal
        self._journal_exec = journal_exec  # pruning runs in order with the journal's writes
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        self.every = every
        self.interval_s = interval_s
        self.fork = fork
        self.prune_journal = prune_journal
        self.seq = snapshot_seq  # of the newest snapshot taken or being written
        self._time = time.monotonic()
        self.task: asyncio.Task[None] | None = None  # the one being written, if any

    @property
    def behind(self) -> bool:
        """The engine has applied commands that no snapshot covers."""
        return self.engine.last_seq > self.seq

    def maybe_take(self) -> None:
        if self.task is not None:
            return
        done = self.engine.last_seq - self.seq
        if done <= 0:
            return
        if done >= self.every or time.monotonic() - self._time >= self.interval_s:
            self.take()

    def take(self) -> None:
        started = time.perf_counter()
        seq = self.engine.last_seq
        self.seq = seq
        self._time = time.monotonic()
        pid = 0
        if self.fork:
            try:
                pid = self._fork(seq)
            except OSError as exc:  # no memory for a fork, process limit...
                SNAPSHOT_FAILURES.inc()
                log.error("snapshot_fork_failed", seq=seq, error=repr(exc),
                          detail="serializing on the event loop instead")
        if pid:
            stall = time.perf_counter() - started
            SNAPSHOT_STALL_SECONDS.observe(stall)
            self.task = asyncio.create_task(self._finish(seq, stall, pid))
        else:
            data = self.engine.snapshot()
            stall = time.perf_counter() - started
            SNAPSHOT_STALL_SECONDS.observe(stall)
            self.task = asyncio.create_task(self._finish(seq, stall, data))

    def shutdown(self) -> None:
        self._exec.shutdown(wait=True)

    def _fork(self, seq: int) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            code = 1
            try:
                # Inherited sockets and files (listening socket, links, journal, data-dir lock)
                # must not outlive the parent in an orphaned child: a restart would find the
                # socket "in use" and the directory locked.
                os.closerange(3, _MAX_FD)
                gc.disable()  # a collection would touch (and copy) every page
                self.snapshots.write(seq, self.engine.snapshot())
                code = 0
            finally:
                os._exit(code)
        return pid

    async def _finish(self, seq: int, stall: float, work: bytes | int) -> None:
        """Write `work` (the bytes) or wait for the child `work` (a pid) that writes them;
        then keep two snapshots and prune the journal they cover."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            if isinstance(work, bytes):
                await loop.run_in_executor(self._exec, self.snapshots.write, seq, work)
            else:
                _, status = await loop.run_in_executor(self._exec, os.waitpid, work, 0)
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    await loop.run_in_executor(self._exec, self.snapshots.remove_temp_files)
                    raise OSError(f"snapshot child {work} exited with {code}")
            path = self.snapshots.data_dir / snapshot_name(seq)
            size = path.stat().st_size
            keep_seq, removed = await loop.run_in_executor(self._exec, self.snapshots.prune)
            pruned: list[Path] = []
            if self.prune_journal and keep_seq:
                pruned = await loop.run_in_executor(self._journal_exec, self.journal.prune,
                                                    keep_seq)
            seconds = time.perf_counter() - started
            SNAPSHOT_SECONDS.observe(seconds)
            log.info("snapshot_written", path=str(path), seq=seq, bytes=size,
                     forked=not isinstance(work, bytes), stall_ms=round(stall * 1e3, 3),
                     write_ms=round(seconds * 1e3, 3), snapshots_removed=len(removed),
                     segments_pruned=len(pruned))
        except OSError as exc:
            SNAPSHOT_FAILURES.inc()
            log.error("snapshot_failed", seq=seq, error=repr(exc))
        finally:
            self.task = None
