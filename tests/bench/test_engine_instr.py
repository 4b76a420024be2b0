"""bench.engine_instr: every workload runs (the engine's answer to each command is checked);
the callgrind driver subtracts the set-up run and divides by N."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from bench import engine_instr


@pytest.mark.parametrize("kind", engine_instr.ENGINE_KINDS + engine_instr.PRIMITIVE_KINDS)
def test_workload_runs(kind: str) -> None:
    engine_instr.workload(kind, 50)()


def test_engine_workload_checks_its_answers() -> None:
    run = engine_instr.workload("cancel", 20)
    run()
    # The same cancels again name closed orders: rejected, which the workload refuses.
    with pytest.raises(AssertionError, match="answered"):
        run()


def test_callgrind_per_op_subtracts_the_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        total = 7_000 if "--apply" in cmd else 1_000
        return subprocess.CompletedProcess(cmd, 0, "", f"==1== Collected : {total}\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert engine_instr.callgrind_per_op("cancel", 3) == 2000
    assert [c[-1] for c in calls] == ["3", "--apply"]
    assert calls[0][:2] == ["valgrind", "--tool=callgrind"]


def test_one_kind_at_a_time_without_callgrind() -> None:
    with pytest.raises(SystemExit):
        engine_instr.main(["cancel", "amend-kept", "--n", "5"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_callgrind_counts_a_primitive() -> None:
    per_op = engine_instr.callgrind_per_op("unlink-struct", 500)
    assert 300 < per_op < 30_000
