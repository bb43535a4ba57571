"""Fixtures for the sandbox suite: a reachable Docker daemon and the offline-built image.

Without a daemon the Docker tests skip on a developer machine but FAIL in CI
(`CI=true`), so a broken engine can never turn the isolation suite green by
skipping it. `.ci/docker.sh` starts the engine and builds the image.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from docker.errors import DockerException, ImageNotFound

from sandbox.docker_runner import DockerRunner
from sandbox.image import DEFAULT_TAG, build_offline
from tests.sandbox.contract import Harness

_TRIAL_IDS = itertools.count(os.getpid() * 1000)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except (DockerException, requests.exceptions.RequestException) as error:
        reason = f"Docker daemon unreachable ({error}); run .ci/docker.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    """The sandbox image tag, built offline (about 40 s) when it is missing."""
    try:
        docker_client.images.get(DEFAULT_TAG)
    except ImageNotFound:
        build_offline(DEFAULT_TAG)
    return DEFAULT_TAG


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
