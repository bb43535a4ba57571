"""`trialforge up` runs the whole service in one command and takes it all down again.

Invariant: the API answers once `up` has started, and a SIGTERM to `up` (what
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


def test_up_serves_and_a_sigterm_stops_every_process_it_started(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "up-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIALFORGE_")}
    env.update(TRIALFORGE_DATA_DIR=str(data), TRIALFORGE_SANDBOX_BACKEND="local")
    up = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", f"--port={port}", "--slots=1"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
        assert len(processes_with(f"TRIALFORGE_DATA_DIR={data}")) >= 5  # up and its children

        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        deadline = time.monotonic() + 30
        while processes_with(f"TRIALFORGE_DATA_DIR={data}") and time.monotonic() < deadline:
            time.sleep(0.3)

        assert processes_with(f"TRIALFORGE_DATA_DIR={data}") == []
    finally:
        for pid in processes_with(f"TRIALFORGE_DATA_DIR={data}"):
            os.kill(pid, signal.SIGKILL)
