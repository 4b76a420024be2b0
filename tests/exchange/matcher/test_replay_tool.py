"""The offline replay tool (`python -m exchange.matcher.replay`) refuses what is not a data dir.

Run as its own process, as an operator runs it: its `main` configures logging for the whole
process (to the stderr of the moment, cached by every logger first used after it), which in
the test process would leave later tests logging to a captured stream pytest has closed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.matcher_harness import REPO


def test_replay_refuses_a_directory_that_is_not_an_exchanges(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exchange.matcher.replay", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert "is not an exchange data directory" in out.stderr
