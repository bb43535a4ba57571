"""CPU time of one container, measured by the kernel, not reported by the trial.

Wall-clock budgets on a shared host measure the neighbours too; CPU time
does not. Each container is started under a cgroup of its own making
(Docker's `cgroup_parent`), whose CPU counter the kernel keeps for every
process below it, forks and all, and keeps after the container is gone, so
the whole run is counted, up to its last instruction. The counter is read
while the trial runs (a CPU-seconds budget is enforced by it) and once it
has exited, then the cgroup is removed.

It needs the host's cgroup filesystem, writable (a worker running as root
on the host), and Docker's `cgroupfs` driver; cgroup v1 (the cpuacct
controller) and v2 both work. Elsewhere (Docker's systemd driver, a worker
in a container, not root) `CpuClock.find` gives None and the runner reads
the daemon's own samples of the container's counter instead
(`daemon_seconds`): any driver, any worker, but a sample about every
DAEMON_SAMPLE_S while the container lives, so the last moments of a run (at
most that long on each of its CPUs) are not in it, a budget is noticed that
much late, and the time is recorded as sampled.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_POLL_S = 0.2  # how often a running container's CPU time is read (a budget checked)
DAEMON_SAMPLE_S = 1.0  # how often the Docker daemon samples a container's stats
PARENT = "trialforge-cpu"  # our cgroups' common parent, under each hierarchy's root


@dataclass(frozen=True)
class CpuClock:
    """Where this host keeps CPU counters: cgroup v2's unified tree or v1's cpuacct."""

    counter_root: Path  # the hierarchy holding the CPU counter
    unified: bool

    @classmethod
    def find(cls, cgroup_driver: str, root: Path = CGROUP_ROOT) -> CpuClock | None:
        """The host's CPU clock when this worker can use it, else None (and why, logged)."""
        if cgroup_driver != "cgroupfs":
            logger.info("sandbox.cputime.unavailable reason=cgroup driver %s", cgroup_driver)
            return None
        unified = (root / "cgroup.controllers").is_file()
        counter_root = root if unified else root / "cpuacct"
        if not os.access(counter_root, os.W_OK):
            logger.info("sandbox.cputime.unavailable reason=%s is not writable", counter_root)
            return None
        return cls(counter_root, unified)

    def new_parent(self, trial_id: int) -> str:
        """A fresh cgroup parent for one container (Docker creates it below each root)."""
        return f"/{PARENT}/{trial_id}-{uuid.uuid4().hex[:12]}"

    def seconds(self, parent: str) -> float | None:
        """CPU seconds used so far under `parent`; None when it cannot be read."""
        directory = self.counter_root / parent.lstrip("/")
        try:
            if self.unified:
                for line in (directory / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
                return None
            return int((directory / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def remove(self, parent: str) -> None:
        """Remove the parent from every hierarchy Docker made it in (v1 has one each)."""
        roots = [self.counter_root] if self.unified else [
            path for path in self.counter_root.parent.iterdir() if path.is_dir()
        ]  # fmt: skip
        for root in roots:
            try:
                (root / parent.lstrip("/")).rmdir()
            except OSError:
                continue  # not in this hierarchy, or already gone


def daemon_seconds(stats: dict[str, Any]) -> float | None:
    """CPU seconds in one of the daemon's stats readings (`GET /containers/{id}/stats`); None
    when it has none (a container that has exited reads as zero, and zero says nothing)."""
    try:
        usage = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
    except (KeyError, TypeError, ValueError):
        return None
    return usage / 1e9 if usage > 0 else None
