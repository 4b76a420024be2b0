"""Where the time goes: summarise py-spy's raw (collapsed-stack) profiles.

`py-spy record --format raw` writes one line per distinct stack, `frame;frame;... count`,
outermost frame first, idle samples excluded. Self time is the innermost frame's share of
the samples, total time the share of samples with the function anywhere on the stack.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# "func (path/to/file.py:123)" -> "func (path/to/file.py)": aggregate by function, not line.
# The checkout this module runs from: frames under it are shown relative to it.
_PROJECT_ROOT = f"{Path(__file__).resolve().parents[1]}/"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


@dataclass(frozen=True, slots=True)
class Row:
    function: str
    self_pct: float
    total_pct: float


def _function(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    path = m.group("file")
    # Keep the project-relative part of the path (or the library's module path).
    for marker in ("site-packages/", "/lib/python3", _PROJECT_ROOT):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


# Innermost frames that are the event loop's own C code (uvloop/asyncio run): py-spy cannot
# tell polling (idle) from socket I/O there, so these samples are reported apart.
LOOP_FRAMES = ("Runner.run (asyncio/runners.py)", "run (uvloop/__init__.py)")


def loop_share(text: str) -> float:
    """Percentage of samples whose innermost frame is the event loop itself."""
    samples = loop = 0
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        count = int(m.group("count"))
        frames = [f for f in m.group("stack").split(";") if f]
        samples += count
        if frames and _function(frames[-1]) in LOOP_FRAMES:
            loop += count
    return 100 * loop / samples if samples else 0.0


def summarize(text: str, top: int = 15) -> tuple[int, list[Row], list[Row]]:
    """(samples, top by self time, top by total time)."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        count = int(m.group("count"))
        frames = [_function(f) for f in m.group("stack").split(";") if f]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for fn in set(frames):
            total_counts[fn] += count
    if not samples:
        return 0, [], []

    def rows(counts: Counter[str], skip: set[str]) -> list[Row]:
        return [Row(fn, 100 * self_counts[fn] / samples, 100 * total_counts[fn] / samples)
                for fn, _ in counts.most_common(top + len(skip)) if fn not in skip][:top]

    # The start-up chain (runpy, cli main, the loop's run, thread bootstrap) is on nearly every
    # stack and says nothing about where the time goes: leave it out of the total ranking.
    widest = max(total_counts.values())
    wrappers = {fn for fn, n in total_counts.items()
                if n >= 0.9 * widest or "threading.py" in fn or "runpy" in fn}
    return samples, rows(self_counts, set()), rows(total_counts, wrappers)


def render(name: str, path: Path, top: int = 12) -> str:
    text = path.read_text(errors="replace")
    samples, by_self, by_total = summarize(text, top)
    lines = [f"{name}: {samples} samples ({path.name}); {loop_share(text):.0f}% in the event "
             "loop's own C code",
             f"  {'self %':>7} {'total %':>8}  function (top by self time)"]
    lines += [f"  {r.self_pct:>7.1f} {r.total_pct:>8.1f}  {r.function}" for r in by_self]
    lines.append(f"  {'self %':>7} {'total %':>8}  function (top by total time)")
    lines += [f"  {r.self_pct:>7.1f} {r.total_pct:>8.1f}  {r.function}" for r in by_total]
    return "\n".join(lines)
