"""The machine line the benchmarks print."""

from __future__ import annotations

from pathlib import Path

from bench import machine


def test_describe_names_cpu_and_idle_policy(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t: fpu\n")
    driver = tmp_path / "driver"
    driver.write_text("haltpoll\n")
    poll = tmp_path / "poll"
    poll.write_text("0\n")
    line = machine.describe(cpuinfo, driver, poll)
    assert line.startswith("machine: nproc=")
    assert "cpu=Some CPU 9000" in line
    assert line.endswith("cpuidle=haltpoll guest_halt_poll_ns=0")


def test_describe_leaves_out_what_the_machine_does_not_have(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    line = machine.describe(missing, missing, missing)
    assert "cpu=unknown" in line
    assert "cpuidle" not in line and "halt_poll" not in line
