"""Run a matcher for tests: in this process (`inprocess_matcher`) or as a subprocess
(`MatcherProcess`), each in its own temp dir, on a unix socket under a short temp path.

Other test suites may use it:

    async with MatcherProcess.started(tmp_path) as proc:
        client = await LinkClient.connect(proc.address, "gw-test")

`Load` drives continuous pipelined traffic from the engine's bench mix over several links and
records every acknowledged command (`acked[seq] = (command, events)`); `wait_until` polls a
condition with a deadline. `stub_engine=True` (or the default factory of `inprocess_matcher`)
runs the matcher over `tests.support.stub_engine.StubEngine` to test the plumbing alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from exchange.link.client import LinkClient, LinkDown
from exchange.matcher.engine_port import EngineFactory
from exchange.matcher.loop import Matcher, MatcherOptions
from exchange.model.commands import Command
from exchange.model.events import Event
from exchange.model.instruments import ExchangeConfig, load_config
from tests.support.stub_engine import StubFactory

REPO = Path(__file__).resolve().parents[2]


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll a condition (state another task changes) until true; TimeoutError after limit_s."""
    deadline = time.monotonic() + limit_s
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {limit_s} s")
        await asyncio.sleep(0.005)


def short_socket_path(name: str = "m.sock") -> Path:
    """A unix socket path well under the 108-byte limit (pytest tmp paths can be long)."""
    return Path(tempfile.mkdtemp(prefix="mx-", dir="/tmp")) / name


@contextlib.asynccontextmanager
async def inprocess_matcher(
    data_dir: Path,
    *,
    factory: EngineFactory | None = None,
    config: ExchangeConfig | None = None,
    fsync: bool = True,
    options: MatcherOptions | None = None,
    segment_bytes: int = 64 * 1024 * 1024,
) -> AsyncIterator[tuple[Matcher, str]]:
    """A matcher running in this event loop; yields (matcher, address). Stops it at exit."""
    from exchange.matcher.main import open_matcher

    sock = short_socket_path()
    address = f"unix:{sock}"
    os.makedirs(data_dir, exist_ok=True)
    matcher = open_matcher(data_dir, config or load_config(), factory or StubFactory(),
                           fsync=fsync, options=options, segment_bytes=segment_bytes)
    matcher.ready = asyncio.Event()
    task = asyncio.create_task(matcher.run(address))
    ready = asyncio.create_task(matcher.ready.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        raise RuntimeError(f"matcher exited at start with {task.result()}")
    try:
        yield matcher, address
    finally:
        matcher.stop()
        await asyncio.wait_for(task, 20)
        shutil.rmtree(sock.parent, ignore_errors=True)


class MatcherProcess:
    """`exchange matcher` as a subprocess with its own data dir and socket; JSON log captured."""

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        stub_engine: bool = False,
        env: dict[str, str] | None = None,
        socket_path: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.socket_path = socket_path or short_socket_path()
        self.address = f"unix:{self.socket_path}"
        self.extra_args = list(extra_args)
        self.stub_engine = stub_engine
        self.env = env
        self.log_path = data_dir.parent / f"{data_dir.name}.matcher.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir), "--listen", self.address, *self.extra_args]
        if self.stub_engine:
            return [sys.executable, "-m", "tests.support.stub_engine", *args]
        return [sys.executable, "-m", "exchange.cli.main", "matcher", *args]

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.env or {})
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.command(), stdout=log_file, stderr=log_file,
                                         cwd=REPO, env=env)

    async def wait_ready(self, limit_s: float = 30.0) -> None:
        """Until a link handshake succeeds; raises if the process exits first."""
        deadline = time.monotonic() + limit_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"matcher exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-4000:])
            if self.socket_path.exists():
                try:
                    client = await LinkClient.connect(self.address, "harness-probe",
                                                      connect_timeout=2)
                except LinkDown:
                    pass
                else:
                    await client.close()
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("matcher did not become ready:\n" + self.log_text()[-4000:])
            await asyncio.sleep(0.02)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    async def wait_exit(self, limit_s: float = 30.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + limit_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("matcher did not exit")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def child_pids(self) -> list[int]:
        """The processes this matcher has forked (a snapshot child while it writes)."""
        assert self.proc is not None
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # the process ended while we looked
                continue
            if fields and int(fields[1]) == self.proc.pid:
                children.append(int(stat.parent.name))
        return children

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, since_start: bool = True) -> list[dict[str, Any]]:
        """The JSON log lines of this run (or of every run)."""
        text = self.log_text()
        if since_start:
            text = text[self._log_offset :] if self._log_offset <= len(text) else text
        out: list[dict[str, Any]] = []
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def find_event(self, name: str) -> dict[str, Any] | None:
        for event in self.log_events():
            if event.get("event") == name:
                return event
        return None

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, data_dir: Path, **kwargs: Any) -> AsyncIterator[MatcherProcess]:
        proc = cls(data_dir, **kwargs)
        proc.start()
        try:
            await proc.wait_ready()
            yield proc
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.terminate()
            shutil.rmtree(proc.socket_path.parent, ignore_errors=True)


class Load:
    """Continuous pipelined load from the engine's bench mix over several links.

    Records every acknowledged command: `acked[seq] = (command, events)`. Stops when told or
    when the links go down (a killed matcher); pending commands then fail with LinkDown and
    are simply not acknowledged.
    """

    def __init__(self, config: ExchangeConfig, *, connections: int = 3, window: int = 32,
                 seed: int = 1, accounts: int = 8) -> None:
        from bench.engine_mix import MixGenerator

        self.config = config
        self.connections = connections
        self.window = window
        self.gens = [MixGenerator(config, seed=seed * 100 + i, accounts=accounts)
                     for i in range(connections)]
        self.acked: dict[int, tuple[Command, list[Event]]] = {}
        self.failed = 0
        self.refused = 0
        self.clients: list[LinkClient] = []
        self._stop = False
        self._idle: asyncio.Event | None = None
        self._in_flight = 0

    def setup_commands(self) -> list[Command]:
        from exchange.model.commands import Deposit

        out: list[Command] = []
        for command in self.gens[0].setup_commands():
            if isinstance(command, Deposit):  # msgpack integers stop at 2**64
                command = Deposit(account_id=command.account_id, asset=command.asset,
                                  amount=min(command.amount, 10**18))
            out.append(command)
        return out

    async def run_setup(self, address: str) -> None:
        client = await LinkClient.connect(address, "load-setup")
        for command in self.setup_commands():
            outcome = await client.submit(command)
            assert not hasattr(outcome, "code"), outcome
            self._record(command, outcome)
        await client.close()

    def _record(self, command: Command, outcome: object) -> None:
        from exchange.link.messages import Result

        if isinstance(outcome, Result):
            self.acked[outcome.seq] = (command, outcome.events)
        else:
            self.refused += 1

    async def start(self, address: str) -> None:
        self._idle = asyncio.Event()
        self.clients = [await LinkClient.connect(address, f"load-{i}")
                        for i in range(self.connections)]
        for client, gen in zip(self.clients, self.gens, strict=True):
            for _ in range(self.window):
                self._send(client, gen)

    def _send(self, client: LinkClient, gen: Any) -> None:
        if self._stop or client.closed:
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
            return
        command: Command = gen.next_command()

        def done(outcome: Any) -> None:
            self._in_flight -= 1
            if isinstance(outcome, LinkDown):
                self.failed += 1
            else:
                self._record(command, outcome)
                if hasattr(outcome, "events"):
                    gen.observe(outcome.events)
            self._send(client, gen)

        try:
            client.submit_callback(command, done)
        except LinkDown:
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
            return
        self._in_flight += 1

    async def stop(self) -> None:
        """Stop sending and wait until nothing is in flight (answered or failed)."""
        self._stop = True
        assert self._idle is not None
        if self._in_flight:
            await asyncio.wait_for(self._idle.wait(), 30)
        for client in self.clients:
            await client.close()

    async def wait_links_down(self, limit_s: float = 10.0) -> None:
        await wait_until(lambda: all(c.closed for c in self.clients) and self._in_flight == 0,
                         limit_s)
