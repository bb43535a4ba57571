"""Runs the service's processes together for one-command use (`trialforge up`, `demo`).

Each part is the same `trialforge` command an operator would run on its own
(API, scheduler, workers), started as a child process with the caller's
settings in its environment, and stopped together: SIGTERM first, SIGKILL
for whatever outlives the grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from app.config import Settings

STOP_GRACE_S = 15.0


@dataclass
class Stack:
    env: Mapping[str, str]
    log: IO[bytes] | None = None  # None: children share our stdout and stderr
    children: dict[subprocess.Popen[bytes], str] = field(default_factory=dict)  # -> command

    def prepare(self, settings: Settings) -> None:
        """What must exist before the children start together: the broker's tables."""
        from workers.celery_app import make_celery, prepare_broker

        prepare_broker(make_celery(settings), settings)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log else None,
            start_new_session=True,
        )
        self.children[process] = " ".join(args)
        return process

    def forget(self, process: subprocess.Popen[bytes]) -> None:
        """Stop watching a child that was meant to end (e.g. one a test killed)."""
        del self.children[process]

    def dead(self) -> list[str]:
        """The commands of children that have exited."""
        return [command for process, command in self.children.items() if process.poll() is not None]

    def stop(self) -> None:
        for process in self.children:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.children:
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def service_commands(host: str, port: int, slots: int) -> Sequence[tuple[str, ...]]:
    """API, scheduler, a proposal worker and a trial worker with `slots` processes."""
    return (
        ("serve", f"--host={host}", f"--port={port}"),
        ("scheduler", "--interval=1"),
        ("worker", "--queues=propose", "--concurrency=4"),
        ("worker", "--queues=trials", f"--concurrency={slots}"),
    )
