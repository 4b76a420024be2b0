"""A private redis-server for tests: a free port on 127.0.0.1, a temp dir, no persistence.

    async with RedisServer.started(tmp_path) as server:
        url = server.url
        server.stop(); server.start()   # kill and restart on the same port

or the `redis_server` pytest fixture (import it into a test module or conftest). Never
touches port 6379 or any server the test did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    if port == 6379:  # never the default port, whatever the OS hands out
        return free_port()
    return port


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        if not Path(REDIS_BIN).exists():
            # The test command installs it (scripts/test.sh): a missing binary is a broken
            # setup to report, not a reason to skip the market-data tests unseen.
            raise RuntimeError("redis-server is not installed: run `bash scripts/test.sh`, "
                               "which installs it, or install the 'redis-server' package")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--daemonize", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: like a crash, no goodbye to clients)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, workdir: Path) -> AsyncIterator[RedisServer]:
        server = cls(workdir)
        await asyncio.to_thread(server.start)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
