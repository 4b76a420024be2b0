"""Run the load generator against the floor probe (`loadtest.floor`) and measure its cost.

The headline calls `measure` before it measures the exchange: the same sessions, rate and mix
against a bare WebSocket server, whose CPU per request is the floor the gateway is quoted
against (`ratio_line`). Market-data subscribers are off here: the floor is order entry only.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from loadtest import recorder
from loadtest.cli import spec_from
from loadtest.cluster import free_port, process_cpu_seconds
from loadtest.runner import RunResult, run
from loadtest.spec import Credential

STARTUP_TIMEOUT_S = 15.0


class Floor(msgspec.Struct, frozen=True, kw_only=True):
    cpu_us_per_request: float
    requests: int
    p50_ms: float
    p99_ms: float


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def measure(args: argparse.Namespace, creds: list[Credential], seconds: float,
            log: Path) -> Floor:
    """Start the floor server, run the generator at `args.rate` for `seconds`, stop it."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "loadtest.floor", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the floor server did not start (log: {log})")
            time.sleep(0.05)
        spec = msgspec.structs.replace(spec_from(args, f"http://127.0.0.1:{port}"),
                                       duration_s=seconds, md_subscribers=0)
        before = process_cpu_seconds(proc.pid) or 0.0
        result = run(spec, creds, progress=lambda line: None)
        used = (process_cpu_seconds(proc.pid) or 0.0) - before
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return Floor(cpu_us_per_request=1e6 * used / max(result.sent, 1), requests=result.sent,
                 p50_ms=_quantile_ms(result, 50.0), p99_ms=_quantile_ms(result, 99.0))


def _quantile_ms(result: RunResult, percentile: float) -> float:
    hist = result.hist(recorder.ACK_ALL)
    return hist.get_value_at_percentile(percentile) / 1000.0 if hist is not None else 0.0


def floor_line(floor: Floor) -> str:
    return (f"floor: bare aiohttp + uvloop + msgspec WebSocket server, same sessions and rate: "
            f"{floor.cpu_us_per_request:.0f} µs CPU/request over {floor.requests} requests "
            f"(ack p50 {floor.p50_ms:.3f} ms, p99 {floor.p99_ms:.3f} ms)")


def ratio_line(floor: Floor, gateway_us: float) -> str:
    ratio = gateway_us / floor.cpu_us_per_request if floor.cpu_us_per_request else 0.0
    return (f"gateway / floor: {gateway_us:.0f} / {floor.cpu_us_per_request:.0f} µs per request "
            f"= {ratio:.2f}x")
