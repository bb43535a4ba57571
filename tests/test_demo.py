"""`trialforge demo` on a fresh data dir: the control arm alone beats the baseline.

Runs the real command (embedded SQLite and broker, real worker processes) at
small size on each runner, the way the README tells a newcomer to run it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCORE = re.compile(r"^\s+(baseline|best)\s+([0-9.]+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("backend", [pytest.param("docker", marks=pytest.mark.docker), "local"])
def test_the_demo_finds_a_trial_better_than_the_baseline(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "docker":
        request.getfixturevalue("sandbox_image")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRIALFORGE_") and key != "OPENAI_API_KEY"
    }
    env.update(TRIALFORGE_DATA_DIR=str(tmp_path / "data"), TRIALFORGE_SANDBOX_BACKEND=backend)

    with socket.create_server(("127.0.0.1", 0)) as taken:  # the dashboard's port is in use
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "demo", "--trials=5", f"--port={port}",
             "--timeout=240"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"port {port} is taken; the dashboard listens on " in done.stderr
    # No terminal: no bar and no stray label, a line per trial; the warning on a line of its own.
    assert "trials" not in done.stdout.splitlines() and "5/5 trials" in done.stdout.splitlines()
    assert any(line.startswith("no LLM endpoint configured") for line in done.stderr.splitlines())
    assert "the control arm runs alone" in done.stderr
    scores = dict(SCORE.findall(done.stdout))
    assert float(scores["best"]) > float(scores["baseline"]), done.stdout
    assert f"5 trials by the control arm alone, {backend} runner" in done.stdout
    if backend == "local":
        assert "NOT isolated" in (tmp_path / "data" / "demo.log").read_text()


@pytest.mark.docker
def test_the_charlm_demo_runs_split_evaluation_end_to_end(
    tmp_path: Path, sandbox_image: str
) -> None:
    """The second example: the trial's own code serves its model to the service's scorer."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRIALFORGE_") and key != "OPENAI_API_KEY"
    }
    env.update(TRIALFORGE_DATA_DIR=str(tmp_path / "data"), TRIALFORGE_SANDBOX_BACKEND="docker")

    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--example=charlm", "--trials=5",
         f"--port={free_port()}", "--timeout=240"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    scores = dict(SCORE.findall(done.stdout))
    # bits per character: lower is better, and no worse than a uniform guess
    assert float(scores["best"]) <= float(scores["baseline"]) < 6.6, done.stdout
    assert "5 trials by the control arm alone, docker runner" in done.stdout
