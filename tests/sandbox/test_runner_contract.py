"""Both built-in runners pass the same contract (`tests/sandbox/contract.py`).

The local runner is unisolated but must still measure, bound and clean up
exactly as the Docker runner does, so a worker can swap one for the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from sandbox import Backend, Runner
from sandbox.docker_runner import TRIAL_LABEL, DockerRunner
from sandbox.local_runner import LOCAL_TRIAL_ENV, LocalRunner
from tests.sandbox.contract import Harness, RunnerContract


@pytest.mark.docker
class TestDockerRunner(RunnerContract):
    kind = Backend.DOCKER

    @pytest.fixture
    def runner(self, docker_client: docker.DockerClient) -> Runner:
        return DockerRunner(docker_client)

    @pytest.fixture
    def image(self, sandbox_image: str) -> str:
        return sandbox_image

    @pytest.fixture
    def leftovers(self, docker_client: docker.DockerClient) -> Callable[[int], int]:
        def containers_of(trial_id: int) -> int:
            labelled = {"label": f"{TRIAL_LABEL}={trial_id}"}
            return len(
                docker_client.containers.list(all=True, ignore_removed=True, filters=labelled)
            )

        return containers_of


class TestGvisorRunner(TestDockerRunner):
    """The Docker runner with gVisor's runtime (TRIALFORGE_DOCKER_RUNTIME=runsc) keeps the
    whole contract, and the trial no longer sees the host's paths."""

    @pytest.fixture
    def runner(self, docker_client: docker.DockerClient, gvisor_runtime: str) -> Runner:
        return DockerRunner(docker_client, runtime=gvisor_runtime)

    def test_the_trial_runs_on_gvisors_kernel_and_sees_no_host_path(self, harness: Harness) -> None:
        result = harness.run(
            """
            import json
            sources = [line.split(" - ")[1] for line in open("/proc/self/mountinfo")]
            print(json.dumps({"kernel": open("/proc/version").read(), "sources": sources}))
            """
        )

        seen = json.loads(result.log_tail.splitlines()[-1])
        assert result.exit_code == 0, result.log_tail
        assert "gVisor" in seen["kernel"] or "4.4.0" in seen["kernel"]
        assert not any(str(harness.root) in source for source in seen["sources"])


class TestLocalRunner(RunnerContract):
    kind = Backend.LOCAL

    @pytest.fixture
    def runner(self) -> Runner:
        return LocalRunner()

    @pytest.fixture
    def image(self) -> str:
        return "ignored-by-the-local-runner"

    @pytest.fixture
    def leftovers(self) -> Callable[[int], int]:
        def processes_of(trial_id: int) -> int:
            """Live processes whose environment carries the trial's marker."""
            marker = f"{LOCAL_TRIAL_ENV}=/{trial_id}/".encode()
            count = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    environ = Path("/proc", pid, "environ").read_bytes()
                except OSError:
                    continue  # exited while we looked
                count += any(var.startswith(marker) for var in environ.split(b"\0"))
            return count

        return processes_of
