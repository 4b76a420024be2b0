"""The matcher as a child of `exchange up`: started, watched, restarted with a limit, stopped.

The child is started with --stop-with-parent, so the kernel stops it when `exchange up` dies
however it dies (kill -9 included) and it never keeps the data directory locked behind our
back. When it exits on its own while running, it is restarted (recovery rebuilds its state
from the journal) up to `max_restarts` times within `window_s`; an exit with code 1 (it
could not start: bad config, damaged journal, directory in use) is not retried, as a restart
would meet the same cause. Why it stopped is read from its log, so the terminal can say it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from exchange.journal.files import open_private
from exchange.link.client import LinkClient, LinkDown

log = structlog.get_logger("exchange.cli.supervise")

EXIT_COULD_NOT_START = 1


class MatcherFailed(RuntimeError):
    """The matcher could not start or stopped for good; the message says why, in one line."""


def exit_reason(code: int, log_path: Path, offset: int) -> str:
    """Why the matcher exited, from its exit code and what it logged after `offset`."""
    why = ""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("exchange matcher: cannot start: "):
            why = line.removeprefix("exchange matcher: cannot start: ")
            continue
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            why = str(entry.get("error") or entry.get("detail") or entry.get("event"))
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return f"{why} ({how})" if why else how


@dataclass
class MatcherSupervisor:
    command: list[str]
    address: str
    log_path: Path
    max_restarts: int = 3
    window_s: float = 300.0
    ready_timeout_s: float = 120.0
    on_restart: Callable[[str, int], None] | None = None
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    _restart_times: deque[float] = field(default_factory=deque)
    _log_offset: int = 0
    _stopping: bool = False

    async def start(self) -> None:
        """Spawn the matcher and wait until it answers a link handshake."""
        try:
            self._log_offset = self.log_path.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0
        fd = open_private(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            # Its own session: Ctrl-C reaches only us, and we stop the matcher in order.
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, "--stop-with-parent", str(os.getpid()),
                stdout=fd, stderr=fd, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(fd)
        await self._wait_ready(self.proc)

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        while True:
            if proc.returncode is not None:
                raise MatcherFailed(self.why(proc.returncode))
            try:
                client = await LinkClient.connect(self.address, "exchange-up-probe",
                                                  connect_timeout=2.0)
            except (LinkDown, OSError):
                if loop.time() > deadline:
                    raise MatcherFailed(
                        f"the matcher did not answer within {self.ready_timeout_s:g} s "
                        f"(see {self.log_path})") from None
                await asyncio.sleep(0.1)
                continue
            await client.close()
            if proc.returncode is not None:  # someone else answered; ours is gone
                raise MatcherFailed(self.why(proc.returncode))
            return

    def why(self, code: int) -> str:
        return exit_reason(code, self.log_path, self._log_offset)

    async def watch(self) -> str:
        """Restart the matcher each time it dies, within the limit; return why it stopped
        for good (never returns while it runs, or once stop() was called)."""
        loop = asyncio.get_running_loop()
        while True:
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopping:
                await asyncio.Event().wait()  # stop() owns the rest
            reason = self.why(code)
            log.error("matcher_exited", code=code, reason=reason, log=str(self.log_path))
            if code == EXIT_COULD_NOT_START:
                return f"the matcher stopped: {reason}"
            now = loop.time()
            while self._restart_times and now - self._restart_times[0] > self.window_s:
                self._restart_times.popleft()
            if len(self._restart_times) >= self.max_restarts:
                return (f"the matcher stopped: {reason}; not restarted: already "
                        f"{self.max_restarts} restarts within {self.window_s:g} s")
            self._restart_times.append(now)
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart(reason, self.restarts)
            log.warning("matcher_restarting", restart=self.restarts, reason=reason)
            try:
                await self.start()
            except MatcherFailed as exc:
                return f"the matcher did not come back: {exc}"

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (it finishes its batch and snapshots), SIGKILL after `timeout_s`."""
        self._stopping = True
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    return await proc.wait()
            except TimeoutError:
                log.error("matcher_kill", detail=f"no exit {timeout_s} s after SIGTERM")
                proc.kill()
                return await proc.wait()
        return proc.returncode


def say(message: str) -> None:
    """A line for the operator at the terminal (logs are JSON lines on stderr as well)."""
    print(f"exchange up: {message}", file=sys.stderr, flush=True)
