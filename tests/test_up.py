"""`trialforge up` runs the whole service in one command and takes it all down again.

Invariant: the API answers once `up` has started; a child that dies is
restarted, with backoff, and reported (issue 14); and a SIGTERM to `up` (what
a service manager or `timeout` sends) stops every process it started: none
is left running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment contains `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path("/proc", pid, "environ").read_bytes():
                found.append(int(pid))
        except OSError:
            continue  # gone meanwhile
    return found


def scheduler_of(marker: str) -> list[int]:
    """Pids of `trialforge scheduler` processes carrying `marker` in their environment."""
    return [
        pid
        for pid in processes_with(marker)
        if b"scheduler" in Path("/proc", str(pid), "cmdline").read_bytes()
    ]


def test_up_serves_restarts_a_dead_child_and_a_sigterm_stops_every_process(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "up-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIALFORGE_")}
    env.update(TRIALFORGE_DATA_DIR=str(data), TRIALFORGE_SANDBOX_BACKEND="local")
    report = tmp_path / "up.log"
    up = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", f"--port={port}", "--slots=1"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=report.open("wb"),
    )  # fmt: skip
    try:
        deadline, health = time.monotonic() + 60, None
        while health is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = r.status
            except OSError:
                time.sleep(0.3)
        assert health == 200
        marker = f"TRIALFORGE_DATA_DIR={data}"
        assert len(processes_with(marker)) >= 5  # up and its children
        (scheduler,) = scheduler_of(marker)

        os.kill(scheduler, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not [pid for pid in scheduler_of(marker) if pid != scheduler]:
            assert time.monotonic() < deadline, report.read_text()
            time.sleep(0.3)
        said = report.read_text()
        assert "scheduler --interval=1 exited with -9" in said and "restarting in 1s" in said
        assert "scheduler --interval=1 restarted" in said
        assert up.poll() is None  # one dead child did not take the service down

        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        deadline = time.monotonic() + 30
        while processes_with(f"TRIALFORGE_DATA_DIR={data}") and time.monotonic() < deadline:
            time.sleep(0.3)

        assert processes_with(f"TRIALFORGE_DATA_DIR={data}") == []
    finally:
        for pid in processes_with(f"TRIALFORGE_DATA_DIR={data}"):
            os.kill(pid, signal.SIGKILL)
