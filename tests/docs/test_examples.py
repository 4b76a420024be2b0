"""The README's and docs' examples run as written, and run again: against `exchange up --demo`
started in a fresh directory (as a reader would, from the directory holding ./data), each
leaving no open order behind (run again and again, an example must not fill the book).

An example is a ```python block that ends by running itself (`asyncio.run(main())`); the
other blocks are API summaries. The only change made to an example is its port (8080 in the
text, a free port here: tests never rely on a fixed port).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from gateway.client import TradeClient
from tests.exchange.cli.test_exchange_up import free_port, start_up, stop_up

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
RUNS = 3


def examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for n, block in enumerate(BLOCK.findall(path.read_text()), 1):
            if block.rstrip().endswith("asyncio.run(main())"):
                found.append((f"{path.relative_to(REPO)} example {n}", block))
    return found


def test_the_examples_are_found() -> None:
    assert {where.split(" ")[0] for where, _ in examples()} == {"README.md", "docs/API.md"}


async def run_example(code: str, cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def demo_open_orders(cwd: Path, port: int) -> list[dict[str, Any]]:
    creds = json.loads((cwd / "data" / "demo-credentials.json").read_text())
    async with await TradeClient.connect(f"ws://127.0.0.1:{port}/ws/trade",
                                         api_key=creds[0]["api_key"],
                                         secret=creds[0]["secret"]) as client:
        return await client.open_orders()


async def test_examples_run_as_written_repeatedly(tmp_path: Path) -> None:
    port = free_port()
    up = await start_up(tmp_path / "data", port)
    try:
        for _ in range(RUNS):
            for where, code in examples():
                assert "127.0.0.1:8080" in code, where
                code = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                status, output = await run_example(code, tmp_path)
                assert status == 0, f"{where} failed:\n{output}"
                assert await demo_open_orders(tmp_path, port) == [], f"{where} left orders"
    finally:
        assert await stop_up(up) == 0
