"""Runs trials as plain subprocesses, for machines without Docker.

This is NOT a sandbox: the trial can read whatever the worker can read and
reach the network. Every run logs `sandbox.local.unisolated`, every log tail
starts with `UNISOLATED_NOTICE` and every result says `isolated=False`, so
nobody mistakes these results for contained ones. What it does bound:

- wall-clock: our deadline, then SIGKILL to the trial's process group (it
  gets a session of its own) and to every process still carrying its marker
  variable `LOCAL_TRIAL_ENV` (`<namespace>/<trial id>/<owner>`), which also lets
  `sweep` find the trials of a worker that died (and which attempt they were),
  and only its own installation's;
- memory: RLIMIT_AS, i.e. virtual address space, stricter than a container's
  resident-memory limit (libraries that reserve large ranges, such as
  OpenBLAS thread buffers, need headroom);
- CPU time: RLIMIT_CPU of wallclock_s x cpus, a backstop for trials orphaned
  by a dead worker; its SIGXCPU is reported as a deadline overrun;
- processes: RLIMIT_NPROC, which Linux counts per user, so it is set to the
  user's current count plus `pids`; root is exempt from it;
- file size: RLIMIT_FSIZE of `FILE_MAX_BYTES` per file (no cap on /output as a whole:
  only the Docker runner has one).

Links, FIFOs and devices the trial left in its output are removed before
anything reads it, as on Docker (`sandbox.artifacts.scrub`).

What it can tell about memory: an allocation past RLIMIT_AS fails instead of
being killed, so a Python trial dies with `MemoryError`, recognised as the
last line of its output and reported as `oom_killed`. A native library that
aborts or segfaults on a failed malloc reads as a crash, and the kernel's OOM
killer (host memory exhausted) as exit 137 without `oom_killed`.

The recipe and evaluator run in temporary copies, so a trial cannot edit its
recipe, and find their output directory (and the evaluator its data) through
`TRIALFORGE_OUTPUT` / `TRIALFORGE_DATA` instead of mounts.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from sandbox.artifacts import directory_bytes, removed_notice, scrub
from sandbox.contract import (
    DATA_ENV,
    MODEL_SOCKET,
    MODEL_SOCKET_ENV,
    OUTPUT_ENV,
    SANDBOX_PATH,
    WORKER_LOG_HEADER,
    EvalRequest,
    EvalResult,
    Limits,
    RunRequest,
    RunResult,
    never_ran,
)
from sandbox.logtail import TailBuffer
from sandbox.metrics import evaluator_verdict

logger = logging.getLogger(__name__)

UNISOLATED_NOTICE = "[trialforge: local runner, NOT isolated: no network or filesystem sandbox]\n"
LOCAL_TRIAL_ENV = "TRIALFORGE_LOCAL_TRIAL"  # marks every process of a trial for sweeping
FILE_MAX_BYTES = 16 * 1024**3  # per file: a runaway writer fails before the disk fills
CPU_GRACE_S = 1  # added to the CPU-time backstop so our deadline normally fires first
PIPE_CHUNK_BYTES = 64 * 1024
PIPE_DRAIN_S = 5.0  # to read what is left in the pipes after every process is killed
_SIGNAL_EXIT_BASE = 128  # a shell reports death by signal N as exit 128 + N
_OOM_LAST_LINE = "MemoryError"
# `python3` is the worker's own interpreter (its venv has numpy), then the system's tools.
LOCAL_PATH = f"{Path(sys.executable).parent}:{SANDBOX_PATH}"


@dataclass(frozen=True)
class _Exited:
    exit_code: int
    timed_out: bool
    wallclock_s: float
    log: TailBuffer
    stdout: TailBuffer


class LocalRunner:
    """The unisolated fallback runner: a subprocess under rlimits and our deadline."""

    isolated = False

    def __init__(self, namespace: str = "") -> None:
        """`namespace` separates installations on one host: sweeps see only their own."""
        self.namespace = namespace

    def run(self, request: RunRequest) -> RunResult:
        logger.warning("sandbox.local.unisolated trial_id=%s role=run", request.trial_id)
        if request.cpu_limit_s is not None:  # its processes share no cgroup to count them by
            reason = "the local runner cannot count CPU time, which the CPU-seconds budget needs: "
            return never_ran(reason + "use the Docker runner", isolated=False)
        exited = _execute(
            request.trial_id,
            request.command,
            source=request.recipe_dir,
            env={**request.env, OUTPUT_ENV: str(request.output_dir.resolve())},
            limits=request.limits,
            namespace=self.namespace,
            owner=request.owner,
        )
        log_tail = exited.log.text(header=UNISOLATED_NOTICE)
        try:
            removed = scrub(request.output_dir)
            artifact_bytes = directory_bytes(request.output_dir)
        except OSError as error:
            return RunResult(
                exit_code=exited.exit_code,
                oom_killed=False,
                timed_out=exited.timed_out,
                wallclock_s=exited.wallclock_s,
                artifact_bytes=0,
                log_tail=log_tail,
                image_digest=None,
                isolated=False,
                infra_error=f"cannot measure {request.output_dir}: {error}",
            )
        return RunResult(
            exit_code=exited.exit_code,
            oom_killed=exited.exit_code != 0 and _ends_with_memory_error(log_tail),
            timed_out=exited.timed_out,
            wallclock_s=exited.wallclock_s,
            artifact_bytes=artifact_bytes,
            log_tail=log_tail + removed_notice(removed),
            image_digest=None,
            isolated=False,
            infra_error=None,
            removed=tuple(removed),
        )

    def evaluate(self, request: EvalRequest) -> EvalResult:
        logger.warning("sandbox.local.unisolated trial_id=%s role=eval", request.trial_id)
        output = {OUTPUT_ENV: str(request.output_dir.resolve())}
        env = {} if request.worker is not None else dict(output)
        if request.data_dir is not None:
            env[DATA_ENV] = str(request.data_dir.resolve())

        def score(extra: Mapping[str, str]) -> _Exited:
            return _execute(
                request.trial_id,
                request.command,
                source=request.evaluator_dir,
                env={**env, **extra},
                limits=request.limits,
                namespace=self.namespace,
                owner=request.owner,
            )

        worker_log = ""
        if request.worker is None:
            exited = score({})
        else:
            exited, worker_log = self._with_worker(request, output, score)
        log_tail = exited.log.text(header=UNISOLATED_NOTICE) + worker_log
        metrics, reason = evaluator_verdict(
            exit_code=exited.exit_code,
            timed_out=exited.timed_out,
            oom_killed=exited.exit_code != 0 and _ends_with_memory_error(log_tail),
            stdout=exited.stdout.text(),
        )
        return EvalResult(
            exit_code=exited.exit_code,
            timed_out=exited.timed_out,
            metrics=metrics,
            error=reason,
            log_tail=log_tail,
            infra_error=None,
            wallclock_s=exited.wallclock_s,
        )

    def _with_worker(
        self,
        request: EvalRequest,
        output: Mapping[str, str],
        score: Callable[[Mapping[str, str]], _Exited],
    ) -> tuple[_Exited, str]:
        """Split evaluation as plain processes (NOT isolated: the worker could read the
        data): the worker in a thread of its own, the scorer here, then the worker killed."""
        worker = request.worker
        assert worker is not None
        with tempfile.TemporaryDirectory(prefix=f"trialforge-{request.trial_id}-ipc-") as ipc:
            shared = {MODEL_SOCKET_ENV: os.path.join(ipc, MODEL_SOCKET),
                      "PYTHONPATH": str(worker.helpers_dir)}  # fmt: skip
            served: list[_Exited] = []
            thread = threading.Thread(
                target=lambda: served.append(
                    _execute(
                        request.trial_id,
                        worker.command,
                        source=worker.recipe_dir,
                        env={**output, **shared, "PYTHONUNBUFFERED": "1"},
                        limits=replace(worker.limits, wallclock_s=request.limits.wallclock_s),
                        namespace=self.namespace,
                        owner=request.owner,
                    )
                ),
                daemon=True,
            )
            thread.start()
            exited = score(shared)  # its processes end with it: what is left is the worker
            _kill_marked(self.namespace, [request.trial_id], [request.owner])
            thread.join(PIPE_DRAIN_S)
        log = served[0].log.text() if served else ""
        return exited, WORKER_LOG_HEADER + log

    def live_trials(self) -> dict[int, set[str]]:
        live: dict[int, set[str]] = {}
        for _, trial_id, owner in _marked_processes(self.namespace):
            live.setdefault(trial_id, set()).add(owner)
        return live

    def sweep(
        self, trial_ids: Collection[int] | None = None, owners: Collection[str] | None = None
    ) -> int:
        """SIGKILL every process marked as a local trial (or as one of `trial_ids`, and of
        `owners`). Returns how many processes were killed. Processes of other users
        are invisible unless the worker is root.
        """
        return _kill_marked(self.namespace, trial_ids, owners)


def _execute(
    trial_id: int,
    command: str,
    *,
    source: Path,
    env: Mapping[str, str],
    limits: Limits,
    namespace: str,
    owner: str,
) -> _Exited:
    """Run `command` in a private copy of `source` under rlimits; kill it all at the end."""
    with tempfile.TemporaryDirectory(prefix=f"trialforge-{trial_id}-") as scratch:
        workdir = Path(scratch, "work")
        shutil.copytree(source, workdir, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        return _supervise(
            trial_id,
            command,
            workdir=workdir,
            env={
                "PATH": LOCAL_PATH,
                "HOME": scratch,
                **env,
                LOCAL_TRIAL_ENV: f"{namespace}/{trial_id}/{owner}",
            },
            limits=limits,
            namespace=namespace,
            owner=owner,
        )


def _supervise(
    trial_id: int,
    command: str,
    *,
    workdir: Path,
    env: Mapping[str, str],
    limits: Limits,
    namespace: str,
    owner: str,
) -> _Exited:
    log, stdout = TailBuffer(), TailBuffer()
    nproc = _tasks_of_user(os.getuid()) + limits.pids
    started = time.monotonic()
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: _apply_rlimits(limits, nproc),
    )
    assert process.stdout is not None and process.stderr is not None  # both are PIPE
    pumps = [
        _pump(process.stdout, log, stdout),
        _pump(process.stderr, log),
    ]
    try:
        process.wait(timeout=limits.wallclock_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    wallclock_s = time.monotonic() - started
    # The trial is over, whether it exited or hit the deadline: nothing of it may live on.
    _kill_group(process.pid)
    _kill_marked(namespace, [trial_id], [owner])
    returncode = process.wait()
    for pump in pumps:
        pump.join(PIPE_DRAIN_S)
        if pump.is_alive():
            logger.warning("sandbox.local.pipe_held trial_id=%s", trial_id)
    exit_code = _SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode
    return _Exited(
        exit_code=exit_code,
        timed_out=timed_out or exit_code == _SIGNAL_EXIT_BASE + signal.SIGXCPU,
        wallclock_s=wallclock_s,
        log=log,
        stdout=stdout,
    )


def _apply_rlimits(limits: Limits, nproc: int) -> None:
    """Runs in the child between fork and exec: plain syscalls only."""
    cpu_s = math.ceil(limits.wallclock_s * max(limits.cpus, 1.0)) + CPU_GRACE_S
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + CPU_GRACE_S))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_MAX_BYTES, FILE_MAX_BYTES))


def _pump(pipe: IO[bytes], *buffers: TailBuffer) -> threading.Thread:
    """Drain `pipe` into `buffers` on a daemon thread, so a full pipe never blocks the trial."""

    def drain() -> None:
        with pipe:
            while chunk := os.read(pipe.fileno(), PIPE_CHUNK_BYTES):
                for buffer in buffers:
                    buffer.write(chunk)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already empty: the usual case after a clean exit


def _kill_marked(
    namespace: str, trial_ids: Collection[int] | None, owners: Collection[str] | None = None
) -> int:
    """SIGKILL marked processes (of `trial_ids` and `owners` only, if given); returns how many."""
    killed = 0
    for pid, trial_id, owner in _marked_processes(namespace):
        if trial_ids is not None and trial_id not in trial_ids:
            continue
        if owners is not None and owner not in owners:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue  # it exited while we looked
        killed += 1
        logger.info("sandbox.local.killed trial_id=%s pid=%s owner=%s", trial_id, pid, owner)
    return killed


def _marked_processes(namespace: str) -> list[tuple[int, int, str]]:
    """(pid, trial id, owner) of every visible process whose environment carries our marker."""
    marker = f"{LOCAL_TRIAL_ENV}={namespace}/".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue  # exited meanwhile, or another user's process
        for variable in environ.split(b"\0"):
            if variable.startswith(marker):
                trial_id, _, owner = variable[len(marker) :].decode().partition("/")
                if trial_id.isdigit():
                    found.append((int(entry.name), int(trial_id), owner))
    return found


def _tasks_of_user(uid: int) -> int:
    """Threads owned by `uid`: what RLIMIT_NPROC counts against."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(Path(entry.path, "task")))
        except OSError:
            continue  # exited meanwhile
    return count


def _ends_with_memory_error(log_tail: str) -> bool:
    lines = log_tail.strip().splitlines()
    return bool(lines) and lines[-1].startswith(_OOM_LAST_LINE)
