"""`python -m loadtest.headline`: the headline end-to-end benchmark, everything on this machine.

Starts the whole exchange in a temp dir (matcher with --fsync always, one gateway, and a
private redis-server for market data when the binary is installed), creates and funds the
accounts through the matcher's admin link, runs the standard scenario (4,000 orders/s offered
for 30 s over 20 sessions across the 3 symbols, 2 market-data subscribers), prints the table,
and ends with exactly one line:

    RESULT e2e offered_per_s=<int> achieved_per_s=<int> p50_ms=<float> p99_ms=<float>
    p999_ms=<float> errors=<int>   (all on one line)

Above the RESULT line it also prints the CPU each process used per request and the
exchange's own latency histograms over the run (gateway request-to-reply, matcher journal
write+fsync). Before it, unless --floor-seconds 0, it runs the same load against a bare
WebSocket server (`loadtest.floor`) and prints the gateway's CPU per request as a multiple of
that floor, both measured in this one run. With --find-max it then searches the highest
sustained rate with p99 <= 5 ms.
With --profile it samples the gateway and the matcher with py-spy during the standard run
(needs `py-spy` next to the interpreter or on PATH, and permission to ptrace them) and prints
the functions that dominate each.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

from bench import machine
from exchange.journal import disk_probe
from loadtest import accounts, floor_run, internals, profiles, report
from loadtest.cli import add_load_arguments, find_max_and_report, run_and_report
from loadtest.cluster import Cluster
from loadtest.runner import RunResult

# The headline's latency target: 4,000 orders/s with p99 ack <= 1 ms (docs/PERFORMANCE.md).
TARGET_P99_MS = 1.0


def start_profilers(cluster: Cluster, out: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: no profiles (pip install py-spy)", flush=True)
        return []
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in ("gateway", "matcher"):
        pid = cluster.pids.get(name)
        if pid is None:
            continue
        # --gil: sample only the thread holding the GIL, i.e. Python CPU time; fsync waits and
        # idle polling (GIL released) drop out. Raw collapsed stacks: summarised below, and
        # rendered by any flame-graph tool.
        argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                "--rate", "200", "--nonblocking", "--gil", "--format", "raw",
                "-o", str(out / f"profile-{name}.txt")]
        log = (out / f"py-spy-{name}.log").open("wb")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    return procs


def cpu_line(cpu: dict[str, float], result: RunResult) -> str:
    """CPU each process used during the run (drain and cleanup included), per request sent."""
    cpu = {**cpu, "generator": result.generator_cpu_s}
    per = max(result.sent, 1)
    parts = [f"{name} {t:.1f} s ({1e6 * t / per:.0f} µs/request)" for name, t in cpu.items()]
    return "CPU during the run: " + ", ".join(parts)


def write_exchange_json(
    path: Path, cpu: dict[str, float], result: RunResult,
    inside: dict[internals.Key, internals.Hist], disk: disk_probe.SyncLatency,
    floor: floor_run.Floor | None = None,
) -> None:
    """What the exchange itself did during the run, next to results.json."""
    per = max(result.sent, 1)
    data = {
        "disk_fdatasync_us": {"pattern": disk.pattern, "p50": disk.p50_us, "p99": disk.p99_us,
                              "max": disk.max_us},
        "cpu_s": {**cpu, "generator": result.generator_cpu_s},
        "floor": msgspec.to_builtins(floor) if floor is not None else None,
        "cpu_us_per_request": {name: 1e6 * t / per for name, t in cpu.items()},
        "histograms": [
            {"metric": name, "labels": dict(labels), "count": h.count, "sum": h.total,
             "p50_le": h.quantile(0.5), "p99_le": h.quantile(0.99), "max_le": h.top()}
            for (name, labels), h in sorted(inside.items()) if h.count or h.total
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(data), indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.headline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-redis", action="store_true",
                        help="market data over the matcher link even if redis-server exists")
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the exchange's data and logs here (default: a temp dir)")
    parser.add_argument("--gateway-args", default="", metavar="ARGS",
                        help="extra `exchange gateway` options, one string (e.g. "
                             "\"--window 1024 --queue-size 4096\"), to size the gateway")
    parser.add_argument("--matcher-args", default="", metavar="ARGS",
                        help="extra `exchange matcher` options, one string (e.g. "
                             "\"--snapshot-interval 10\" to see snapshots' pauses in a short run)")
    parser.add_argument("--floor-seconds", type=float, default=10.0,
                        help="first run the same load against a bare WebSocket server for this "
                             "long (0: skip) and quote the gateway's CPU per request against it")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy flame graphs of gateway and matcher during the run")
    add_load_arguments(parser)
    parser.set_defaults(out=Path("loadtest-results/headline"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="exchange-headline-") as tmp:
        workdir = args.workdir or Path(tmp)
        with Cluster(workdir, fsync=args.fsync, redis=not args.no_redis,
                     config=args.config, gateway_args=shlex.split(args.gateway_args),
                     matcher_args=shlex.split(args.matcher_args)) as cluster:
            md = f"Redis ({cluster.redis_url})" if cluster.redis_url else "the matcher link"
            print(f"exchange up: gateway {cluster.url}, matcher {cluster.matcher} "
                  f"(fsync {args.fsync}), market data over {md}", flush=True)
            creds = asyncio.run(accounts.provision_via_matcher(cluster.matcher, args.sessions))
            print(f"created and funded {len(creds)} accounts", flush=True)
            print(machine.describe(), flush=True)
            # The journal's disk, measured now: with fsync on, every ack waits for at least
            # one of these, so its p99 is a floor under the ack p99 that no code change moves.
            disk = disk_probe.measure(workdir)
            print(f"{disk.line()} (the journal's own pattern, on its disk)", flush=True)
            note = disk_probe.floor_note(disk, TARGET_P99_MS)
            if note is not None and args.fsync == "always":
                print(note, flush=True)
            floor = None
            if args.floor_seconds > 0:
                floor = floor_run.measure(args, creds, args.floor_seconds, workdir / "floor.log")
                print(floor_run.floor_line(floor), flush=True)
            spies = start_profilers(cluster, args.out, args.duration) if args.profile else []
            urls = (f"{cluster.url}/metrics", cluster.matcher_metrics_url)
            before = [internals.scrape(u) for u in urls]
            cpu_before = cluster.cpu_seconds()
            result = run_and_report(args, cluster.url, creds)
            cpu = {name: t - cpu_before.get(name, 0.0) for name, t in cluster.cpu_seconds().items()}
            print(cpu_line(cpu, result), flush=True)
            if floor is not None and "gateway" in cpu:
                gateway_us = 1e6 * cpu["gateway"] / max(result.sent, 1)
                print(floor_run.ratio_line(floor, gateway_us), flush=True)
            inside: dict[internals.Key, internals.Hist] = {}
            for url, earlier in zip(urls, before, strict=True):
                inside.update(internals.delta(internals.scrape(url), earlier))
            print(internals.table(inside), flush=True)
            write_exchange_json(args.out / "exchange.json", cpu, result, inside, disk, floor)
            for spy in spies:
                try:
                    spy.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    spy.terminate()
            for name in ("gateway", "matcher") if spies else ():
                path = args.out / f"profile-{name}.txt"
                if path.exists():
                    print(profiles.render(name, path), flush=True)
            if args.find_max:
                outcome = find_max_and_report(args, cluster.url, creds)
                print(f"find-max: highest sustained rate with p99 <= {args.p99_bound_ms:g} ms: "
                      f"{outcome.best_rate}/s", flush=True)
            codes = cluster.stop()
            if any(code not in (0, -15, None) for code in codes.values()):
                print(f"NOTE: exchange processes exited with {codes}", flush=True)
    print(report.result_line(result), flush=True)
    ok = result.errors == 0 and result.violations.total == 0 and not result.failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
