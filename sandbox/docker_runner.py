"""Runs trials and evaluators in hardened, throwaway Docker containers.

A trial is untrusted code written by a model. Each container gets no network,
a read-only root with a size-limited /tmp, no capabilities, no privilege
escalation, a non-root user, and caps on memory (swap included), CPUs and
processes. Only /output is writable. The evaluator runs in a second container
that mounts the trial's output read-only, so the trial never sees the
evaluator or the held-out data, and cannot forge its score.

With an artifact cap, /output is a tmpfs volume of the cap's size (plus one
page): a write past it fails inside the sandbox with ENOSPC and the host's
disk never holds more. Its pages count against the trial's memory limit. A
small holder container keeps the volume mounted once the trial exits, and
its files are copied out through the holder, regular files only. Without a
cap, /output is a bind mount. Either way no link, FIFO or device leaves the
sandbox (`sandbox.artifacts`).

With a `runtime` (runsc, gVisor's), trial and evaluator containers run on a
kernel of their own in user space: a kernel exploit in the trial meets
gVisor, not the host, and the host's paths no longer show in mountinfo.

Lifecycle, every time: create -> start -> wait (our deadline, then kill) ->
logs -> remove, removal in `finally`. Containers carry the label
`trialforge.trial=<id>` so `sweep` finds what a killed worker left behind.
Docker failures become `infra_error`; only the trial's own behaviour becomes
exit codes and flags.
"""

from __future__ import annotations

import logging
import os
import tarfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from http import HTTPStatus
from pathlib import Path
from typing import Literal

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.models.volumes import Volume
from docker.types import DeviceRequest, LogConfig, Mount

from sandbox.artifacts import directory_bytes, extract_archive, removed_notice, scrub
from sandbox.contract import (
    DATA_ENV,
    DATA_MOUNT,
    EVALUATOR_MOUNT,
    HELPERS_MOUNT,
    IPC_MOUNT,
    MODEL_SOCKET,
    MODEL_SOCKET_ENV,
    OUTPUT_ENV,
    OUTPUT_MOUNT,
    RECIPE_MOUNT,
    WORKER_LOG_HEADER,
    EvalRequest,
    EvalResult,
    Limits,
    RunRequest,
    RunResult,
    SandboxUnavailable,
    WorkerRequest,
    never_ran,
)
from sandbox.cputime import CPU_POLL_S, DAEMON_SAMPLE_S, CpuClock, daemon_seconds
from sandbox.logtail import TailBuffer
from sandbox.metrics import evaluator_verdict

logger = logging.getLogger(__name__)

TRIAL_LABEL = "trialforge.trial"
ROLE_LABEL = "trialforge.role"
NAMESPACE_LABEL = "trialforge.namespace"  # one installation (database) of several on a daemon
OWNER_LABEL = "trialforge.owner"  # the worker (lease holder) that started it
TMPFS_BYTES = 256 * 1024 * 1024  # /tmp is RAM-backed and counts against the memory limit
NOBODY = 65534  # uid and gid used when the worker itself is root
OOM_EXIT_CODE = 137  # 128 + SIGKILL, what the init process reports for an OOM kill
# The daemon's own copy of the output, per container, until removal: json-file
# keeps at most DAEMON_LOG_FILES files of DAEMON_LOG_MAX_SIZE, so a trial that
# prints forever cannot fill the host's disk while it runs.
DAEMON_LOG_MAX_SIZE = "1m"
DAEMON_LOG_FILES = "2"
OUTPUT_SLACK_BYTES = 4096  # past the cap: a trial that tried to write more shows as more
HOLD_COMMAND = "exec sleep 2147483647"  # the holder only keeps the output volume mounted
HOLD_LIMITS = Limits(wallclock_s=0.0, memory_bytes=32 * 1024**2, cpus=0.05, pids=4)

IPC_BYTES = 1024 * 1024  # the socket's tmpfs: a socket needs no room; nothing else belongs

Role = Literal["run", "eval", "hold", "model"]
_DOCKER_ERRORS = (DockerException, requests.exceptions.RequestException)


@dataclass(frozen=True)
class _Container:
    """Everything that differs between a trial container and an evaluator container."""

    trial_id: int
    role: Role
    image: str
    command: str
    working_dir: str
    mounts: tuple[Mount, ...]
    env: Mapping[str, str]
    limits: Limits
    owner: str = ""
    cpu_limit_s: float | None = None  # a CPU-seconds budget (trial runs only)


@dataclass(frozen=True)
class _Exited:
    exit_code: int
    timed_out: bool
    oom_killed: bool
    wallclock_s: float
    image_digest: str
    log_tail: str
    stdout_tail: str
    cpu_s: float | None = None
    cpu_overrun: bool = False
    cpu_sampled: bool = False


class DockerRunner:
    """The isolated runner: one hardened container per trial, one per evaluation."""

    isolated = True

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        namespace: str = "",
        runtime: str | None = None,
        kernel_cpu: bool = True,
    ) -> None:
        """`namespace` separates installations sharing a daemon: sweeps see only their own.
        `runtime`: the OCI runtime of trial and evaluator containers (e.g. runsc for gVisor;
        None: the daemon's default). An unknown one fails every run as an infra error.
        `kernel_cpu=False` counts CPU time by the daemon's samples even where the kernel's
        counter is ours to read (what a host without it gets; `sandbox.cputime`)."""
        self.namespace, self.runtime, self.kernel_cpu = namespace, runtime, kernel_cpu
        try:
            self._client = client or docker.from_env()
        except DockerException as error:
            raise SandboxUnavailable(f"cannot reach the Docker daemon: {error}") from error

    def run(self, request: RunRequest) -> RunResult:
        spec = _Container(
            trial_id=request.trial_id,
            role="run",
            image=request.image,
            command=request.command,
            working_dir=RECIPE_MOUNT,
            mounts=(
                _bind(request.recipe_dir, RECIPE_MOUNT, read_only=True),
                _bind(request.output_dir, OUTPUT_MOUNT, read_only=False),
            ),
            env={**request.env, OUTPUT_ENV: OUTPUT_MOUNT},
            limits=request.limits,
            owner=request.owner,
            cpu_limit_s=request.cpu_limit_s,
        )
        cap = request.output_cap_bytes
        try:
            # Our own uid, or nobody's when we are root, must be able to write /output.
            if os.getuid() == 0:
                os.chown(request.output_dir, NOBODY, NOBODY)
            if cap is None:
                exited = self._execute(spec)
                removed = scrub(request.output_dir)
            else:
                exited, removed = self._execute_capped(spec, request.output_dir, cap)
            artifact_bytes = directory_bytes(request.output_dir)
        except (*_DOCKER_ERRORS, OSError, tarfile.TarError) as error:
            return never_ran(_infra_error(spec, error), isolated=True)
        uncounted = None  # it ran long enough to be read, and was not: no budget was kept
        if request.cpu_limit_s is not None and exited.cpu_s is None:
            if exited.wallclock_s >= 2 * (DAEMON_SAMPLE_S if exited.cpu_sampled else CPU_POLL_S):
                uncounted = (
                    "the Docker daemon reports no CPU time for this container, which the "
                    "CPU-seconds budget needs: the budget could not be kept here"
                )
        return RunResult(
            exit_code=exited.exit_code,
            oom_killed=exited.oom_killed,
            timed_out=exited.timed_out,
            wallclock_s=exited.wallclock_s,
            artifact_bytes=artifact_bytes,
            log_tail=exited.log_tail + removed_notice(removed),
            image_digest=exited.image_digest,
            isolated=True,
            infra_error=uncounted,
            output_full=cap is not None and artifact_bytes > cap,
            removed=tuple(removed),
            cpu_s=exited.cpu_s,
            cpu_overrun=exited.cpu_overrun,
            cpu_sampled=exited.cpu_sampled,
        )

    def _execute_capped(
        self, spec: _Container, output_dir: Path, cap: int
    ) -> tuple[_Exited, list[str]]:
        """Run `spec` with /output on a tmpfs volume of `cap` bytes; copy its plain files
        into `output_dir` through a holder container; what was left out."""
        volume = self._tmpfs_volume(cap + OUTPUT_SLACK_BYTES, spec)
        try:
            held = _volume(volume.name, read_only=True)
            hold = replace(spec, role="hold", command=HOLD_COMMAND, mounts=(held,),
                           env={}, limits=HOLD_LIMITS)  # fmt: skip
            holder = self._create(hold)
            try:
                holder.start()
                recipe = spec.mounts[0]
                exited = self._execute(
                    replace(spec, mounts=(recipe, _volume(volume.name, read_only=False)))
                )
                chunks, _ = holder.get_archive(OUTPUT_MOUNT)
                removed = extract_archive(chunks, output_dir, prefix=OUTPUT_MOUNT.strip("/"))
            finally:
                _remove(holder, hold)
        finally:
            _remove(volume, spec)
        return exited, removed

    def evaluate(self, request: EvalRequest) -> EvalResult:
        worker = request.worker
        mounts = [_bind(request.evaluator_dir, EVALUATOR_MOUNT, read_only=True)]
        env: dict[str, str] = {}
        if worker is None:
            mounts.append(_bind(request.output_dir, OUTPUT_MOUNT, read_only=True))
            env[OUTPUT_ENV] = OUTPUT_MOUNT
        else:  # split: the scorer gets the socket and the helper, never the trial's output
            mounts.append(_bind(worker.helpers_dir, HELPERS_MOUNT, read_only=True))
            env.update(_SPLIT_ENV)
        if request.data_dir is not None:
            mounts.append(_bind(request.data_dir, DATA_MOUNT, read_only=True))
            env[DATA_ENV] = DATA_MOUNT
        spec = _Container(
            trial_id=request.trial_id,
            role="eval",
            image=request.image,
            command=request.command,
            working_dir=EVALUATOR_MOUNT,
            mounts=tuple(mounts),
            env=env,
            limits=request.limits,
            owner=request.owner,
        )
        try:
            if worker is None:
                exited, worker_log = self._execute(spec), ""
            else:
                exited, worker_log = self._with_worker(spec, _model(request, worker))
        except _DOCKER_ERRORS as error:
            return EvalResult(
                exit_code=None,
                timed_out=False,
                metrics=None,
                error=None,
                log_tail="",
                infra_error=_infra_error(spec, error),
            )
        metrics, reason = evaluator_verdict(
            exit_code=exited.exit_code,
            timed_out=exited.timed_out,
            oom_killed=exited.oom_killed,
            stdout=exited.stdout_tail,
        )
        return EvalResult(
            exit_code=exited.exit_code,
            timed_out=exited.timed_out,
            metrics=metrics,
            error=reason,
            log_tail=exited.log_tail + worker_log,
            infra_error=None,
            wallclock_s=exited.wallclock_s,
        )

    def _with_worker(self, scorer: _Container, model: _Container) -> tuple[_Exited, str]:
        """Start the model worker, run the scorer to its end, then stop the worker; the
        scorer's outcome and the worker's log. They share only the socket's tmpfs."""
        volume = self._tmpfs_volume(IPC_BYTES, model)
        try:
            ipc = _volume(volume.name, IPC_MOUNT, read_only=False)
            model = replace(model, mounts=(*model.mounts, ipc))
            container = self._create(model)
            try:
                container.start()
                exited = self._execute(replace(scorer, mounts=(*scorer.mounts, ipc)))
                _kill(container)
                return exited, WORKER_LOG_HEADER + _logs(container, stdout=True, stderr=True)
            finally:
                _remove(container, model)
        finally:
            _remove(volume, model)

    def live_trials(self) -> dict[int, set[str]]:
        # ignore_removed: a container its own worker removes while we list it is gone, not
        # an error (docker-py inspects each listed container and would raise NotFound).
        filters = {"label": [TRIAL_LABEL, self._scope]}
        containers = self._client.containers.list(all=True, ignore_removed=True, filters=filters)
        volumes = self._client.volumes.list(filters=filters)  # capped outputs
        live: dict[int, set[str]] = {}
        for labels in [c.labels for c in containers] + [v.attrs["Labels"] or {} for v in volumes]:
            owners = live.setdefault(int(labels[TRIAL_LABEL]), set())
            owners.add(labels.get(OWNER_LABEL, ""))
        return live

    @property
    def _scope(self) -> str:
        return f"{NAMESPACE_LABEL}={self.namespace}"

    def sweep(
        self, trial_ids: Collection[int] | None = None, owners: Collection[str] | None = None
    ) -> int:
        """Remove leftover containers (all trials', or only `trial_ids`'); returns how many.

        Without `trial_ids` this also removes containers that another live
        worker on the same daemon is running, so pass the ids when workers
        share a daemon; `owners` narrows it to what those workers started.
        """
        if trial_ids is None:
            selectors = [TRIAL_LABEL]
        else:
            selectors = [f"{TRIAL_LABEL}={trial_id}" for trial_id in trial_ids]
        removed = 0
        for selector in selectors:
            filters = {"label": [selector, self._scope]}
            for container in self._client.containers.list(
                all=True, ignore_removed=True, filters=filters
            ):
                if owners is not None and container.labels.get(OWNER_LABEL, "") not in owners:
                    continue
                try:
                    container.remove(force=True)
                except NotFound:
                    continue  # removed meanwhile by its own worker's `finally`
                removed += 1
                logger.info(
                    "sandbox.sweep.removed trial_id=%s container=%s owner=%s",
                    container.labels.get(TRIAL_LABEL),
                    container.short_id,
                    container.labels.get(OWNER_LABEL, ""),
                )
            # Then the capped outputs' volumes, free once their containers are gone.
            for volume in self._client.volumes.list(filters=filters):
                labels = volume.attrs["Labels"] or {}
                if owners is not None and labels.get(OWNER_LABEL, "") not in owners:
                    continue
                try:
                    volume.remove(force=True)
                except NotFound:
                    continue
                removed += 1
                logger.info(
                    "sandbox.sweep.removed trial_id=%s volume=%s owner=%s",
                    labels.get(TRIAL_LABEL),
                    volume.name,
                    labels.get(OWNER_LABEL, ""),
                )
        return removed

    def _execute(self, spec: _Container) -> _Exited:
        clock = self._cpu_clock if spec.role == "run" else None
        parent = clock.new_parent(spec.trial_id) if clock else None
        container = self._create(spec, cgroup_parent=parent)
        try:
            container.start()
            started = time.monotonic()  # the budget starts with the trial, not our set-up
            deadline = started + spec.limits.wallclock_s
            over_cpu, sampled = False, None
            if clock and parent and spec.cpu_limit_s is not None:
                finished, over_cpu, _ = _wait_counting(
                    container, deadline, lambda: clock.seconds(parent), spec.cpu_limit_s
                )
            elif spec.role == "run" and clock is None:  # no counter of ours: the daemon's
                samples = _DaemonSamples(container)
                if spec.cpu_limit_s is not None:
                    finished, over_cpu, sampled = _wait_counting(
                        container, deadline, samples.highest, spec.cpu_limit_s
                    )
                else:  # only recorded: one wait, and the last sample taken meanwhile
                    finished = _wait(container, deadline=deadline)
                    sampled = samples.highest()
            else:
                finished = _wait(container, deadline=deadline)
            waited_s = time.monotonic() - started
            if not finished:
                _kill(container)
            exit_code = int(container.wait()["StatusCode"])
            container.reload()
            state = container.attrs["State"]
            return _Exited(
                exit_code=exit_code,
                timed_out=not finished and not over_cpu,
                oom_killed=exit_code == OOM_EXIT_CODE and bool(state["OOMKilled"]),
                wallclock_s=_ran_s(state, fallback=waited_s),
                image_digest=str(container.attrs["Image"]),
                log_tail=_logs(container, stdout=True, stderr=True),
                # Only the evaluator's stdout carries a verdict.
                stdout_tail=(
                    _logs(container, stdout=True, stderr=False) if spec.role == "eval" else ""
                ),
                cpu_s=clock.seconds(parent) if clock and parent else sampled,
                cpu_overrun=over_cpu,
                cpu_sampled=spec.role == "run" and clock is None,
            )
        finally:
            _remove(container, spec)
            if clock and parent:
                clock.remove(parent)

    @cached_property
    def _cpu_clock(self) -> CpuClock | None:
        """This host's CPU counters, when the daemon's cgroups are ours to read."""
        if not self.kernel_cpu:
            return None
        try:
            driver = str(self._client.info().get("CgroupDriver", ""))
        except _DOCKER_ERRORS:
            return None
        return CpuClock.find(driver)

    def _tmpfs_volume(self, size: int, spec: _Container) -> Volume:
        """A RAM-backed volume of `size` bytes that only the container user can use; it
        holds its files while some container mounts it, and carries `spec`'s labels."""
        uid, gid = _container_user().split(":")
        return self._client.volumes.create(
            driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs",
                         "o": f"size={size},uid={uid},gid={gid},mode=0700"},
            labels=self._labels(spec),
        )  # fmt: skip

    def _labels(self, spec: _Container) -> dict[str, str]:
        return {
            TRIAL_LABEL: str(spec.trial_id),
            ROLE_LABEL: spec.role,
            NAMESPACE_LABEL: self.namespace,
            OWNER_LABEL: spec.owner,
        }

    def _create(self, spec: _Container, cgroup_parent: str | None = None) -> Container:
        limits = spec.limits
        device_requests = (
            [DeviceRequest(device_ids=list(limits.gpu_ids), capabilities=[["gpu"]])]
            if limits.gpu_ids
            else []
        )
        container: Container = self._client.containers.create(
            spec.image,
            ["/bin/sh", "-c", spec.command],
            working_dir=spec.working_dir,
            mounts=list(spec.mounts),
            environment={"HOME": "/tmp", **spec.env},
            user=_container_user(),
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMPFS_BYTES},mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=limits.pids,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,
            nano_cpus=int(limits.cpus * 1e9),
            init=True,
            device_requests=device_requests,
            # The holder runs only our `sleep`: it needs no second kernel.
            runtime=None if spec.role == "hold" else self.runtime,
            cgroup_parent=cgroup_parent,
            labels=self._labels(spec),
            log_config=LogConfig(
                type=LogConfig.types.JSON,
                config={"max-size": DAEMON_LOG_MAX_SIZE, "max-file": DAEMON_LOG_FILES},
            ),
        )
        logger.info(
            "sandbox.container.created trial_id=%s role=%s container=%s",
            spec.trial_id,
            spec.role,
            container.short_id,
        )
        return container


def _ran_s(state: Mapping[str, object], fallback: float) -> float:
    """How long the container's process ran, from the daemon's own start and exit times:
    neither our start-up of it nor our polling is charged to the trial."""
    try:
        started = datetime.fromisoformat(str(state["StartedAt"]))
        ended = datetime.fromisoformat(str(state["FinishedAt"]))
    except (KeyError, ValueError):
        return fallback
    ran = (ended - started).total_seconds()
    return ran if 0 <= ran <= fallback + 1 else fallback  # a clock that jumped: ours


def _wait_counting(
    container: Container,
    deadline: float,
    used: Callable[[], float | None],
    limit_s: float,
) -> tuple[bool, bool, float | None]:
    """(exited, over its CPU budget, the highest CPU reading): wait in short steps, reading
    the CPU counter between them."""
    seen = used()  # a run that ends within the first step still has a reading
    while (left := deadline - time.monotonic()) > 0:
        try:
            container.wait(timeout=min(CPU_POLL_S, left))
            return True, False, seen
        except requests.exceptions.RequestException:
            container.reload()  # still running, or the daemon is gone (an infra error)
        spent = used()
        if spent is not None:
            seen = spent if seen is None else max(seen, spent)
        if seen is not None and seen > limit_s:
            return False, True, seen
    return False, False, seen


class _DaemonSamples:
    """The daemon's stream of a container's stats (one reading about every DAEMON_SAMPLE_S),
    read in a thread of its own. The stream outlives the container's exit (reading zero) and
    ends when the container is removed, and with it the thread."""

    def __init__(self, container: Container) -> None:
        self._seen: float | None = None
        self._stream = container.stats(stream=True, decode=True)
        threading.Thread(target=self._read, daemon=True, name="cpu-samples").start()

    def _read(self) -> None:
        try:
            for stats in self._stream:
                value = daemon_seconds(stats)
                if value is not None:
                    self._seen = value if self._seen is None else max(self._seen, value)
        except (*_DOCKER_ERRORS, requests.exceptions.RequestException):
            return  # the container is gone, or the daemon: the readings so far stand

    def highest(self) -> float | None:
        return self._seen


def _wait(container: Container, deadline: float) -> bool:
    """Block until the container exits (True) or `deadline` passes (False)."""
    try:
        container.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except requests.exceptions.RequestException:
        if time.monotonic() < deadline:
            raise  # the daemon failed us before the deadline: an infra error
        return False
    return True


def _kill(container: Container) -> None:
    try:
        container.kill()
    except APIError as error:
        if error.status_code != HTTPStatus.CONFLICT:
            raise
        # 409: it exited on its own between the deadline and the kill.


def _logs(container: Container, *, stdout: bool, stderr: bool) -> str:
    tail = TailBuffer()
    for chunk in container.logs(stdout=stdout, stderr=stderr, stream=True, follow=False):
        tail.write(chunk)
    return tail.text()


_SPLIT_ENV = {MODEL_SOCKET_ENV: f"{IPC_MOUNT}/{MODEL_SOCKET}", "PYTHONPATH": HELPERS_MOUNT}


def _model(request: EvalRequest, worker: WorkerRequest) -> _Container:
    """The model worker of a split evaluation: the trial's commit and output read-only, the
    helper, no held-out data; it lives as long as the scorer."""
    return _Container(
        trial_id=request.trial_id,
        role="model",
        image=worker.image,
        command=worker.command,
        working_dir=RECIPE_MOUNT,
        mounts=(
            _bind(worker.recipe_dir, RECIPE_MOUNT, read_only=True),
            _bind(request.output_dir, OUTPUT_MOUNT, read_only=True),
            _bind(worker.helpers_dir, HELPERS_MOUNT, read_only=True),
        ),
        env={**_SPLIT_ENV, OUTPUT_ENV: OUTPUT_MOUNT, "PYTHONUNBUFFERED": "1"},
        limits=replace(worker.limits, wallclock_s=request.limits.wallclock_s),
        owner=request.owner,
    )


def _remove(thing: Container | Volume, spec: _Container) -> None:
    """Remove a container or a volume of `spec`'s trial, whatever state it is in."""
    kind = "volume" if isinstance(thing, Volume) else "container"
    name = thing.name if isinstance(thing, Volume) else thing.short_id
    try:
        thing.remove(force=True)
    except _DOCKER_ERRORS as error:
        # Deliberate: the result is already decided; `sweep` removes it later by label.
        logger.error(
            "sandbox.%s.remove_failed trial_id=%s role=%s name=%s error=%s",
            kind, spec.trial_id, spec.role, name, error,
        )  # fmt: skip
        return
    logger.info(
        "sandbox.%s.removed trial_id=%s role=%s name=%s", kind, spec.trial_id, spec.role, name
    )


def _volume(name: str, target: str = OUTPUT_MOUNT, *, read_only: bool) -> Mount:
    """A named volume at `target`; no copy of the image's own directory there into it (that
    would also copy the image directory's owner and mode onto the volume)."""
    return Mount(target=target, source=name, type="volume", read_only=read_only,
                 no_copy=True)  # fmt: skip


def _container_user() -> str:
    """The worker's own uid, so it can clean up what the trial wrote; nobody if it is root."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        uid = gid = NOBODY
    return f"{uid}:{gid}"


def _bind(source: Path, target: str, *, read_only: bool) -> Mount:
    """A bind mount that fails at create time, as an infra error, if `source` is missing.

    (The legacy `volumes=` form would silently create an empty directory.)
    """
    return Mount(target=target, source=str(source.resolve()), type="bind", read_only=read_only)


def _infra_error(spec: _Container, error: Exception) -> str:
    reason = f"{type(error).__name__}: {error}"
    logger.error(
        "sandbox.docker.infra_error trial_id=%s role=%s error=%s", spec.trial_id, spec.role, reason
    )
    return reason
