"""One line naming the machine a benchmark ran on, with what moves its latency figures.

Besides the CPU, the idle policy matters on a virtual machine: an idle vCPU that halts must
be woken by an inter-processor interrupt through the host, and every message between two
processes on different vCPUs pays that. On this project's 2-vCPU KVM guests, a pipe
round trip between two processes costs ~108 us with guest halt polling off
(`haltpoll.guest_halt_poll_ns=0`) and ~12 us with it on (200,000 ns) or with both on one vCPU.
"""

from __future__ import annotations

import os
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")
_CPUIDLE_DRIVER = Path("/sys/devices/system/cpu/cpuidle/current_driver")
_HALT_POLL_NS = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model(cpuinfo: Path = _CPUINFO) -> str:
    text = _read(cpuinfo) or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def describe(cpuinfo: Path = _CPUINFO, cpuidle_driver: Path = _CPUIDLE_DRIVER,
             halt_poll_ns: Path = _HALT_POLL_NS) -> str:
    parts = [f"machine: nproc={os.cpu_count()}", f"cpu={cpu_model(cpuinfo)}"]
    driver = _read(cpuidle_driver)
    if driver:
        parts.append(f"cpuidle={driver}")
    poll = _read(halt_poll_ns)
    if poll is not None:
        parts.append(f"guest_halt_poll_ns={poll}")
    return " ".join(parts)
