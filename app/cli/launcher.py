"""Runs the service's processes together for one-command use (`trialforge up`, `demo`).

Each part is the same `trialforge` command an operator would run on its own
(API, scheduler, workers), started as a child process with the caller's
settings in its environment, and stopped together: SIGTERM first, SIGKILL
for whatever outlives the grace period. `supervise` restarts a child that
died, after a backoff that doubles while it keeps dying (and starts afresh
once it has run for a while), and says so: one crashed worker does not take
the whole service down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from app.config import Settings

STOP_GRACE_S = 15.0
RESTART_BASE_S = 1.0  # the first restart's delay; it doubles while the child keeps dying
RESTART_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long before dying starts its backoff afresh


def restart_delay(restarts: int) -> float:
    """Seconds before restart number `restarts` (1 for the first) of a child that died."""
    return min(RESTART_BASE_S * 2.0 ** max(restarts - 1, 0), RESTART_MAX_S)


@dataclass
class _Child:
    args: tuple[str, ...]
    process: subprocess.Popen[bytes]
    started: float
    restarts: int = 0
    due: float | None = None  # when a dead child starts again; None while it runs

    @property
    def command(self) -> str:
        return " ".join(self.args)


@dataclass
class Stack:
    env: Mapping[str, str]
    log: IO[bytes] | None = None  # None: children share our stdout and stderr
    children: list[_Child] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic

    def prepare(self, settings: Settings) -> None:
        """What must exist before the children start together: the broker's tables."""
        from workers.celery_app import make_celery, prepare_broker  # builds a Celery app

        prepare_broker(make_celery(settings), settings)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        child = _Child(args, self._spawn(args), self.clock())
        self.children.append(child)
        return child.process

    def _spawn(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log else None,
            start_new_session=True,
        )

    def process(self, *args: str) -> subprocess.Popen[bytes]:
        """The current process of the child started with `args` (a restart replaces it)."""
        return next(child.process for child in self.children if child.args == args)

    def forget(self, process: subprocess.Popen[bytes]) -> None:
        """Stop watching a child that was meant to end (e.g. one a test killed)."""
        self.children = [child for child in self.children if child.process is not process]

    def dead(self) -> list[str]:
        """The commands of children that have exited (and are not started again)."""
        return [child.command for child in self.children if child.process.poll() is not None]

    def supervise(self, say: Callable[[str], None]) -> None:
        """One look at the children: schedule a restart for each one that died, start those due."""
        now = self.clock()
        for child in self.children:
            code = child.process.poll()
            if code is None:
                continue
            if child.due is None:
                lived = now - child.started
                child.restarts = 1 if lived >= HEALTHY_AFTER_S else child.restarts + 1
                delay = restart_delay(child.restarts)
                child.due = now + delay
                say(f"{child.command} exited with {code} after {lived:.0f}s; "
                    f"restarting in {delay:.0f}s (restart {child.restarts})")  # fmt: skip
            elif now >= child.due:
                child.process, child.started, child.due = self._spawn(child.args), now, None
                say(f"{child.command} restarted (pid {child.process.pid})")

    def stop(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()


def service_commands(host: str, port: int, slots: int) -> Sequence[tuple[str, ...]]:
    """API, scheduler, a proposal worker and a trial worker with `slots` processes."""
    return (
        ("serve", f"--host={host}", f"--port={port}"),
        ("scheduler", "--interval=1"),
        ("worker", "--queues=propose", "--concurrency=4"),
        ("worker", "--queues=trials", f"--concurrency={slots}"),
    )
