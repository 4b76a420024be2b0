"""Start a whole exchange on this machine for a benchmark or a smoke test, and stop it.

A matcher (journal and snapshots in a temp dir, fsync as asked), one gateway in front of it on
a free 127.0.0.1 port, and, when the `redis-server` binary exists and Redis is wanted, a
private redis-server on a free port (never one already running) carrying the market data.
Each process logs to a file in the work dir; the pids are exposed for profilers (py-spy).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from exchange import credentials

STARTUP_TIMEOUT_S = 30.0
# The gateway's per-key/per-connection rate limits protect the exchange from one client; a
# benchmark offers its load through few sessions, so it raises them out of the way.
BENCH_RATE_LIMIT = 1_000_000


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) process `pid` has used so far; None if gone.

    Read from the process's CPU clock (`clock_getcpuclockid`), exact to the nanosecond;
    /proc's utime + stime count whole scheduler ticks (10 ms), more than a light process
    uses in a short run, so a small figure read from them comes out as 0. The ticks are the
    fallback where the clock cannot be had.
    """
    clock = _cpu_clock(pid)
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            return None  # the process is gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are the 14th/15th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_clock(pid: int) -> int | None:
    """The clock id of process `pid`'s CPU time, or None (no such libc call, or no process)."""
    try:
        getcpuclockid = ctypes.CDLL(None).clock_getcpuclockid
    except (OSError, AttributeError):
        return None
    clock = ctypes.c_int()
    if getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return None
    return clock.value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(what: str, check: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up:\n{tail}")
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {STARTUP_TIMEOUT_S:g}s (log: {log})")


def _tcp_ping_redis(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _unix_connectable(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


class Cluster:
    """`with Cluster(workdir) as c:` → c.url (gateway), c.matcher (link address), c.pids."""

    def __init__(
        self,
        workdir: Path,
        *,
        fsync: str = "always",
        redis: bool = True,
        config: str | None = None,
        gateway_args: list[str] | None = None,
        matcher_args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.fsync = fsync
        self.want_redis = redis
        self.config = config
        self.gateway_args = gateway_args or []
        self.matcher_args = matcher_args or []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis_url: str | None = None
        self.matcher = ""
        self.url = ""
        self.matcher_metrics_url = ""

    def _use_secrets_key(self) -> None:
        """API secrets are sealed at rest: without a key ring from the caller's environment,
        make one in the work dir, name it in the environment the gateway inherits, and seal
        this process's own account provisioning with it."""
        if os.environ.get(credentials.KEY_ENV) or os.environ.get(credentials.KEY_FILE_ENV):
            return
        path = self.workdir / "secrets-key"
        if not path.exists():
            credentials.write_new_key_file(path)
        os.environ[credentials.KEY_FILE_ENV] = str(path)
        # The process reads its ring once; this process may have read another one already.
        credentials.use_key_ring(credentials.KeyRing.load(path))

    def _spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.workdir)
        self.procs[name] = proc
        return proc, log

    def start(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._use_secrets_key()
        exe = [sys.executable, "-m", "exchange.cli.main"]
        redis_bin = shutil.which("redis-server")
        if self.want_redis and redis_bin:
            port = free_port()
            proc, log = self._spawn("redis", [
                redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes",
            ])
            _wait("redis-server", lambda: _tcp_ping_redis(port), proc, log)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
        sock = self.workdir / "matcher.sock"
        self.matcher = f"unix:{sock}"
        argv = [*exe, "matcher", "--data-dir", str(self.workdir / "data"),
                "--listen", self.matcher, "--fsync", self.fsync, "--log-level", "warning",
                *self.matcher_args]
        metrics_port = free_port()
        argv += ["--metrics-port", str(metrics_port)]
        self.matcher_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        if self.config:
            argv += ["--config", self.config]
        if self.redis_url:
            argv += ["--redis-url", self.redis_url]
        proc, log = self._spawn("matcher", argv)
        _wait("matcher", lambda: _unix_connectable(sock), proc, log)
        port = free_port()
        argv = [*exe, "gateway", "--matcher", self.matcher, "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning",
                "--order-limit", str(BENCH_RATE_LIMIT), "--request-limit", str(BENCH_RATE_LIMIT),
                *self.gateway_args]
        if self.redis_url:
            argv += ["--redis", self.redis_url]
        proc, log = self._spawn("gateway", argv)
        self.url = f"http://127.0.0.1:{port}"
        _wait("gateway", lambda: _http_ok(f"{self.url}/healthz"), proc, log)
        return self

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system, all threads) each exchange process has used so far."""
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            used = process_cpu_seconds(proc.pid)
            if used is not None:
                out[name] = used
        return out

    def stop(self) -> dict[str, int | None]:
        """SIGTERM in reverse start order, then SIGKILL after a grace period; exit codes."""
        codes: dict[str, int | None] = {}
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            codes[name] = proc.returncode
        self.procs.clear()
        return codes

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
