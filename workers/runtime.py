"""What a worker process needs around a trial: a runner, its GPUs, a lease, a sweep.

- The runner: Docker when configured or when `auto` finds a daemon, else the
  local runner, with a warning that trials are not isolated.
- GPUs: each worker process owns a fixed slot of the host's GPUs
  (`TRIALFORGE_GPU_IDS`), chosen by its process index, so two trials never
  share a device.
- The lease: a thread renews the trial's heartbeat; when the store says the
  trial is no longer this worker's (cancelled, or reaped as lost), it kills
  the trial's container at once instead of letting it run to its deadline.
- The sweep: at process start, containers of trials that are finished, or
  whose worker on this host is dead, are removed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import docker
import requests
from docker.errors import DockerException
from sqlalchemy import select

from app.config import SandboxBackend, Settings
from app.db import session_scope
from app.loop import heartbeat
from app.models import Trial
from app.states import TrialStatus
from sandbox import Runner
from sandbox.docker_runner import DockerRunner
from sandbox.local_runner import LocalRunner

logger = logging.getLogger(__name__)


class NoGpuSlot(Exception):
    """This worker cannot give a trial the GPUs it asks for; an infra error, not the trial's."""


def worker_name() -> str:
    """`host:pid`: unique among live workers, and tells the sweep whether the owner died."""
    return f"{socket.gethostname()}:{os.getpid()}"


@cache
def runner_for(backend: SandboxBackend, namespace: str) -> Runner:
    if backend is SandboxBackend.LOCAL:
        return _local(namespace)
    if backend is SandboxBackend.DOCKER:
        return DockerRunner(namespace=namespace)
    try:
        client = docker.from_env()
        client.ping()
    except (DockerException, requests.exceptions.RequestException) as error:
        logger.warning("sandbox.docker_unavailable error=%s; falling back to local", error)
        return _local(namespace)
    return DockerRunner(client, namespace=namespace)


def _local(namespace: str) -> Runner:
    logger.warning(
        "sandbox.local_runner: trials run as plain processes, NOT isolated from this host"
    )
    return LocalRunner(namespace)


def gpu_slot(gpus: tuple[str, ...], needed: int, process_index: int) -> tuple[str, ...]:
    """The GPUs of this process's slot: the host's GPUs cut into groups of `needed`."""
    if needed == 0:
        return ()
    slots = len(gpus) // needed
    if slots == 0:
        raise NoGpuSlot(f"the trial needs {needed} GPU(s); this worker has {len(gpus)}")
    start = (process_index % slots) * needed
    return gpus[start : start + needed]


@contextmanager
def leased(
    settings: Settings, runner: Runner, trial_id: int, worker: str
) -> Iterator[threading.Event]:
    """Heartbeat `trial_id` while the block runs; the event is set if the lease was lost."""
    lost, done = threading.Event(), threading.Event()

    def beat() -> None:
        while not done.wait(settings.heartbeat_s):
            with session_scope(settings.resolved_database_url) as session:
                kept = heartbeat(session, trial_id, worker)
            if not kept:
                logger.warning("trial.lease_lost trial_id=%s worker=%s", trial_id, worker)
                lost.set()
                runner.sweep([trial_id])
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join()


def sweep_orphans(settings: Settings, runner: Runner) -> int:
    """Remove what dead workers of this host left; trials of live workers are untouched."""
    live = runner.live_trials()
    if not live:
        return 0
    host = socket.gethostname()
    with session_scope(settings.resolved_database_url) as session:
        rows = session.execute(
            select(Trial.id, Trial.status, Trial.worker).where(Trial.id.in_(live))
        ).all()
    orphans = [
        trial_id
        for trial_id, status, worker in rows
        if status != TrialStatus.RUNNING or _dead_here(worker, host)
    ]
    removed = runner.sweep(orphans) if orphans else 0
    logger.info("sandbox.orphans_swept trials=%s removed=%s", orphans, removed)
    return removed


def _dead_here(worker: str | None, host: str) -> bool:
    if worker is None or ":" not in worker:
        return False
    worker_host, pid = worker.rsplit(":", 1)
    if worker_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False
