"""PNG plots of a run: the latency percentile distribution, and latency/throughput over time.

Matplotlib with the Agg backend (files only, no display), imported lazily: a run that asks
for no plots never pays for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest import recorder as rec
from loadtest.report import ROWS
from loadtest.runner import RunResult

# Percentile ladder for the distribution plot: x = 1/(1-p), the HdrHistogram convention.
LADDER = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def percentile_plot(result: RunResult, path: Path, title: str = "") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, label in ROWS:
        key = rec.ack_name(name) if name.startswith("order.") else name
        hist = result.hist(key)
        if hist is None or not hist.get_total_count() or key == rec.SEND_LAG:
            continue
        xs = [1 / (1 - p / 100) for p in LADDER]
        ys = [hist.get_value_at_percentile(p) / 1000 for p in LADDER]
        ax.plot(xs, ys, marker=".", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1 / (1 - p / 100) for p in LADDER[1::2]])
    ax.set_xticklabels([f"{p:g}%" for p in LADDER[1::2]])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title or f"Latency by percentile at {result.offered_per_s:.0f} orders/s offered")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def timeline_plot(result: RunResult, path: Path, title: str = "") -> Path:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    # The seconds of the schedule; the drain after it (a few late answers) would only show
    # as a misleading drop of the rates to zero.
    timeline = [s for s in result.timeline if s.second < result.spec.duration_s]
    secs = [s.second + 1 for s in timeline]
    top.plot(secs, [s.p50_ms for s in timeline], label="ack p50")
    top.plot(secs, [s.p99_ms for s in timeline], label="ack p99")
    top.plot(secs, [s.max_ms for s in timeline], label="ack max", alpha=0.5)
    top.set_yscale("log")
    top.set_ylabel("latency (ms)")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    bottom.plot(secs, [s.sent for s in timeline], label="sent/s")
    bottom.plot(secs, [s.acked for s in timeline], label="answered/s")
    bottom.axhline(result.offered_per_s, linestyle="--", color="grey", label="offered/s")
    bottom.set_xlabel("second of the run")
    bottom.set_ylabel("requests/s")
    # From zero (an auto-zoomed axis makes ±0.5% look like a collapse), with room for the legend.
    peak = max([result.offered_per_s, *(max(s.sent, s.acked) for s in timeline)])
    bottom.set_ylim(0, peak * 1.3)
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=8, loc="lower right")
    top.set_title(title or f"Latency and throughput over time, {result.offered_per_s:.0f}/s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
