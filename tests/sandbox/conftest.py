"""Fixtures for the sandbox suite: one trial's directories under each runner."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import docker
import pytest

from sandbox import Runner
from sandbox.docker_runner import DockerRunner
from sandbox.local_runner import LocalRunner
from tests.sandbox.contract import Harness

_TRIAL_IDS = itertools.count(os.getpid() * 1000)


@pytest.fixture
def trial_id() -> int:
    """An id no other test (or concurrent test session) uses, so labels never collide."""
    return next(_TRIAL_IDS)


@pytest.fixture(params=["docker", "local"])
def runner(request: pytest.FixtureRequest) -> Runner:
    """Each built-in runner in turn (a contract class brings its own)."""
    if request.param == "docker":
        request.applymarker(pytest.mark.docker)
        client: docker.DockerClient = request.getfixturevalue("docker_client")
        request.getfixturevalue("sandbox_image")
        return DockerRunner(client)
    return LocalRunner()


@pytest.fixture
def docker_harness(
    docker_client: docker.DockerClient, sandbox_image: str, trial_id: int, tmp_path: Path
) -> Harness:
    """A trial's directories, run by the Docker runner on the sandbox image."""
    return Harness.create(DockerRunner(docker_client), sandbox_image, trial_id, tmp_path)
