"""The py-spy raw-profile summary: self and total shares, wrappers left out of totals."""

from __future__ import annotations

from pathlib import Path

from loadtest.profiles import loop_share, render, summarize

ROOT = "<module> (exchange/cli/main.py:5);run (uvloop/__init__.py:10)"
RAW = f"""\
{ROOT};Runner.run (asyncio/runners.py:118) 50
{ROOT};handle (gateway/ws/trade.py:130);send (aiohttp/web_ws.py:1) 30
{ROOT};handle (gateway/ws/trade.py:131) 15
{ROOT};parse (gateway/core/validation.py:9) 5
not a profile line
"""


def test_self_and_total_shares() -> None:
    samples, by_self, by_total = summarize(RAW)
    assert samples == 100
    top = {r.function: r for r in by_self}
    assert top["Runner.run (asyncio/runners.py)"].self_pct == 50
    assert top["send (aiohttp/web_ws.py)"].self_pct == 30
    # Lines of one function aggregate; total counts the function anywhere on the stack.
    assert top["handle (gateway/ws/trade.py)"].self_pct == 15
    assert top["handle (gateway/ws/trade.py)"].total_pct == 45
    totals = [r.function for r in by_total]
    assert totals[:2] == ["Runner.run (asyncio/runners.py)", "handle (gateway/ws/trade.py)"]
    assert "<module> (exchange/cli/main.py)" not in totals  # on every stack: a wrapper


def test_loop_share_and_render(tmp_path: Path) -> None:
    assert loop_share(RAW) == 50
    path = tmp_path / "profile-gateway.txt"
    path.write_text(RAW)
    text = render("gateway", path)
    assert text.startswith("gateway: 100 samples") and "50% in the event loop" in text
    assert summarize("") == (0, [], [])
