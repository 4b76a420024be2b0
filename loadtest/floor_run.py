"""Run the load generator against the floor probe (`loadtest.floor`) and measure its cost.

The headline calls `measure` before it measures the exchange: the same sessions, rate and mix
against a bare WebSocket server, whose CPU per request is the floor the gateway is quoted
against (`ratio_line`). Market-data subscribers are off here: the floor is order entry only.

Run alone, it measures what the machine itself allows any WebSocket order server, at one or
more rates, with no exchange at all:

    python -m loadtest.floor_run --rates 2000,4000,8000 --duration 10

Each rate prints the floor server's and the generator's CPU per request and the ack latency
the bare server gives. An exchange on this machine cannot answer faster than that, nor carry
more than the rate at which the floor's own latency passes a bound.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from bench import machine
from loadtest import recorder
from loadtest.cli import add_load_arguments, spec_from
from loadtest.cluster import free_port, process_cpu_seconds
from loadtest.runner import RunResult, run
from loadtest.spec import Credential

STARTUP_TIMEOUT_S = 15.0


class Floor(msgspec.Struct, frozen=True, kw_only=True):
    cpu_us_per_request: float  # the floor server's
    requests: int
    p50_ms: float
    p99_ms: float
    p999_ms: float = 0.0
    max_ms: float = 0.0
    generator_us_per_request: float = 0.0  # the load generator's, against the floor
    achieved_per_s: float = 0.0


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
    sent = max(result.sent, 1)
    return Floor(cpu_us_per_request=1e6 * used / sent, requests=result.sent,
                 p50_ms=_quantile_ms(result, 50.0), p99_ms=_quantile_ms(result, 99.0),
                 p999_ms=_quantile_ms(result, 99.9), max_ms=_quantile_ms(result, 100.0),
                 generator_us_per_request=1e6 * result.generator_cpu_s / sent,
                 achieved_per_s=result.achieved_per_s)


def _quantile_ms(result: RunResult, percentile: float) -> float:
    hist = result.hist(recorder.ACK_ALL)
    return hist.get_value_at_percentile(percentile) / 1000.0 if hist is not None else 0.0


def floor_line(floor: Floor) -> str:
    return (f"floor: bare aiohttp + uvloop + msgspec WebSocket server, same sessions and rate: "
            f"{floor.cpu_us_per_request:.0f} µs CPU/request over {floor.requests} requests "
            f"(ack p50 {floor.p50_ms:.3f} ms, p99 {floor.p99_ms:.3f} ms, "
            f"p99.9 {floor.p999_ms:.3f} ms, max {floor.max_ms:.3f} ms); "
            f"generator {floor.generator_us_per_request:.0f} µs CPU/request against it")


def ratio_line(floor: Floor, gateway_us: float) -> str:
    ratio = gateway_us / floor.cpu_us_per_request if floor.cpu_us_per_request else 0.0
    return (f"gateway / floor: {gateway_us:.0f} / {floor.cpu_us_per_request:.0f} µs per request "
            f"= {ratio:.2f}x")


def result_line(rate: float, floor: Floor) -> str:
    return (f"RESULT floor offered_per_s={rate:.0f} achieved_per_s={floor.achieved_per_s:.0f} "
            f"p50_ms={floor.p50_ms:.3f} p99_ms={floor.p99_ms:.3f} p999_ms={floor.p999_ms:.3f} "
            f"max_ms={floor.max_ms:.3f} server_us={floor.cpu_us_per_request:.0f} "
            f"generator_us={floor.generator_us_per_request:.0f}")


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rates takes numbers separated by commas: {text!r}") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("--rates needs at least one positive rate")
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.floor_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=_rates, default=[4000.0],
                        help="offered requests/s, one run each, comma-separated (default 4000)")
    parser.add_argument("--log", type=Path, default=None,
                        help="the floor server's output (default: a temp file)")
    add_load_arguments(parser)
    parser.set_defaults(duration=10.0)
    args = parser.parse_args(argv)
    # The floor server takes any logon: made-up credentials, one account per session.
    creds = [Credential(api_key=f"floor-{n}", secret="floor", account_id=str(n + 1))
             for n in range(args.sessions)]
    print(machine.describe(), flush=True)
    with tempfile.TemporaryDirectory(prefix="exchange-floor-") as tmp:
        log = args.log or Path(tmp) / "floor.log"
        for rate in args.rates:
            floor = measure(argparse.Namespace(**{**vars(args), "rate": rate}), creds,
                            args.duration, log)
            print(floor_line(floor), flush=True)
            print(result_line(rate, floor), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
