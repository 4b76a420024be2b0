"""Command-line options shared by `python -m loadtest` and `python -m loadtest.headline`."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from loadtest import findmax, plots, report
from loadtest.runner import RunResult, run
from loadtest.spec import RATE_PER_PROCESS, Credential, RunSpec

DEFAULT_SYMBOLS = "BTC-USD,ETH-USD,ETH-BTC"


def _workers(text: str) -> int:
    """`auto` (0: chosen from the rate) or a positive number of trading processes."""
    if text == "auto":
        return 0
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--workers must be a positive number or auto")
    return n


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    load = parser.add_argument_group("load")
    load.add_argument("--rate", type=float, default=4000.0, help="offered order requests/s")
    load.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    load.add_argument("--sessions", type=int, default=20,
                      help="trading sessions, one account each")
    load.add_argument("--workers", type=_workers, default=0, metavar="N|auto",
                      help="trading processes (default auto: one per "
                           f"{RATE_PER_PROCESS:,.0f} orders/s offered)")
    load.add_argument("--symbols", default=DEFAULT_SYMBOLS)
    load.add_argument("--md-subscribers", type=int, default=2)
    load.add_argument("--seed", type=int, default=1)
    load.add_argument("--drain", type=float, default=5.0,
                      help="seconds to wait for outstanding answers after the last send")
    load.add_argument("--max-open", type=int, default=400, help="resting orders per session")
    load.add_argument("--config", default=None,
                      help="instrument config TOML the exchange runs with (default: packaged)")
    load.add_argument("--out", type=Path, default=Path("loadtest-results"),
                      help="directory for results.json and the PNG plots")
    load.add_argument("--no-plots", action="store_true")
    fm = parser.add_argument_group("find-max")
    fm.add_argument("--find-max", action="store_true",
                    help="step the rate up until p99 passes --p99-bound-ms or errors appear")
    fm.add_argument("--p99-bound-ms", type=float, default=5.0)
    fm.add_argument("--start-rate", type=int, default=4000)
    fm.add_argument("--factor", type=float, default=1.5)
    fm.add_argument("--max-rate", type=int, default=60_000)
    fm.add_argument("--step-duration", type=float, default=10.0)
    fm.add_argument("--confirm", type=int, default=1,
                    help="re-runs of a failed step before it counts as failed")


def spec_from(args: argparse.Namespace, url: str) -> RunSpec:
    return RunSpec(
        url=url.rstrip("/"),
        rate=args.rate,
        duration_s=args.duration,
        sessions=args.sessions,
        workers=args.workers,
        symbols=[s for s in args.symbols.split(",") if s],
        config_path=args.config,
        md_subscribers=args.md_subscribers,
        seed=args.seed,
        drain_s=args.drain,
        max_open_per_session=args.max_open,
    )


def write_outputs(result: RunResult, out: Path, stem: str, with_plots: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json"]
    report.write_json(result, paths[0])
    if with_plots:
        paths.append(plots.percentile_plot(result, out / f"{stem}-percentiles.png"))
        paths.append(plots.timeline_plot(result, out / f"{stem}-timeline.png"))
    return paths


def run_and_report(args: argparse.Namespace, url: str, creds: list[Credential]) -> RunResult:
    """The standard run: progress lines, table, JSON and plots. Returns the result."""
    spec = spec_from(args, url)
    result = run(spec, creds, progress=lambda line: print(line, flush=True))
    print(report.table(result), flush=True)
    for path in write_outputs(result, args.out, "results", not args.no_plots):
        print(f"wrote {path}", flush=True)
    return result


def find_max_and_report(
    args: argparse.Namespace, url: str, creds: list[Credential]
) -> findmax.FindMaxResult:
    base = msgspec.structs.replace(spec_from(args, url), duration_s=args.step_duration)
    best: dict[int, RunResult] = {}

    def run_at(spec: RunSpec) -> RunResult:
        result = run(spec, creds, progress=lambda line: None)
        best[round(spec.rate)] = result
        return result

    outcome = findmax.find_max(
        base, run_at, bound_p99_ms=args.p99_bound_ms, start_rate=args.start_rate,
        factor=args.factor, max_rate=args.max_rate, confirm=args.confirm,
        progress=lambda line: print(line, flush=True),
    )
    print(findmax.table(outcome), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "findmax.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(outcome), indent=2))
    print(f"wrote {path}", flush=True)
    if outcome.best_rate in best:
        for p in write_outputs(best[outcome.best_rate], args.out, "findmax-best",
                               not args.no_plots):
            print(f"wrote {p}", flush=True)
    return outcome
