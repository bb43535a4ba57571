"""The one place a runner is chosen: the registry of backends and the Docker probe.

Every caller (trial workers, the demo, the tests) asks here, so "is Docker
usable?" is answered once, the same way, and `auto` falls back to the local
runner with the same warning everywhere: trials are then NOT isolated.
"""

from __future__ import annotations

import logging

import docker
import requests
from docker.errors import DockerException

from sandbox.contract import Backend, Runner
from sandbox.docker_runner import DockerRunner
from sandbox.local_runner import LocalRunner

logger = logging.getLogger(__name__)

UNISOLATED_WARNING = "trials run as plain processes, NOT isolated from this host"


def docker_client() -> docker.DockerClient | None:
    """A client of a daemon that answers a ping, or None."""
    try:
        client = docker.from_env()
        client.ping()
    except (DockerException, requests.exceptions.RequestException) as error:
        logger.warning("sandbox.docker_unavailable error=%s", error)
        return None
    return client


def resolve(backend: Backend) -> tuple[Backend, docker.DockerClient | None]:
    """The concrete backend `backend` means on this host, with the Docker client it found."""
    if backend is Backend.LOCAL:
        return Backend.LOCAL, None
    client = docker_client()
    if client is None and backend is Backend.AUTO:
        return Backend.LOCAL, None
    return Backend.DOCKER, client


def make_runner(backend: Backend, namespace: str = "", runtime: str | None = None) -> Runner:
    """The runner for `backend`; `namespace` keeps installations sharing a host apart, and
    `runtime` names the Docker runtime of trial and evaluator containers (e.g. runsc).

    An explicit `docker` with no daemon still gives the Docker runner: its
    trials then fail as `infra_error` (retried), never silently unisolated.
    """
    chosen, client = resolve(backend)
    if chosen is Backend.LOCAL:
        logger.warning("sandbox.local_runner: %s", UNISOLATED_WARNING)
        return LocalRunner(namespace)
    return DockerRunner(client, namespace=namespace, runtime=runtime or None)
