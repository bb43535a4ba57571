"""Fixtures for the sandbox suite: one trial's directories under each runner."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import docker
import pytest

from sandbox.docker_runner import DockerRunner
from tests.sandbox.contract import Harness

_TRIAL_IDS = itertools.count(os.getpid() * 1000)


@pytest.fixture
def trial_id() -> int:
    """An id no other test (or concurrent test session) uses, so labels never collide."""
    return next(_TRIAL_IDS)


@pytest.fixture
def docker_harness(
    docker_client: docker.DockerClient, sandbox_image: str, trial_id: int, tmp_path: Path
) -> Harness:
    """A trial's directories, run by the Docker runner on the sandbox image."""
    return Harness.create(DockerRunner(docker_client), sandbox_image, trial_id, tmp_path)
