"""What a worker hands the sandbox and what it gets back: plain frozen data.

The sandbox knows nothing of searches, the database or Celery. It runs one
command under limits and reports what it *measured*: exit code, OOM kill,
deadline hit, wall-clock and artifact bytes are observed by the runner, never
reported by the trial, so a trial cannot forge its own budget use. Log tails
are bounded (`sandbox.logtail.LOG_TAIL_BYTES`) so a chatty trial cannot fill
a disk or a database row.

A failure of the trial (crash, OOM, deadline) is data in the result. A
failure of ours (image missing, daemon down, GPU unavailable) is
`RunResult.infra_error`: the caller retries those and never blames the trial.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

# Where the trial finds its inputs and leaves its outputs, inside the container.
RECIPE_MOUNT = "/work"
OUTPUT_MOUNT = "/output"
EVALUATOR_MOUNT = "/evaluator"
DATA_MOUNT = "/data"
# Recipes and evaluators find these directories through the environment, so one
# command works on every runner (the local runner has no mounts).
OUTPUT_ENV = "TRIALFORGE_OUTPUT"
DATA_ENV = "TRIALFORGE_DATA"
# PATH inside the sandbox: an imported rootfs has no ENV of its own to supply one.
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Split evaluation (`sandbox/split`): the helper of both sides, read-only and on PYTHONPATH,
# and the private tmpfs holding the socket the scorer and the model worker share.
HELPERS_DIR = Path(__file__).resolve().parent / "split"
HELPERS_MOUNT = "/trialforge"
IPC_MOUNT = "/ipc"
MODEL_SOCKET_ENV = "TRIALFORGE_MODEL_SOCKET"
MODEL_SOCKET = "model.sock"
WORKER_LOG_HEADER = "\n[trialforge: the model worker's log]\n"  # after the scorer's, in its log


class SandboxUnavailable(Exception):
    """The runner cannot work on this host at all (e.g. no Docker daemon); not per trial."""


@dataclass(frozen=True)
class Limits:
    """Per-container budgets. `wallclock_s` is enforced by our own deadline."""

    wallclock_s: float
    memory_bytes: int  # RAM and swap together: a trial cannot swap its way past it
    cpus: float
    pids: int = 256
    gpu_ids: tuple[str, ...] = ()  # device ids as the NVIDIA runtime names them


@dataclass(frozen=True)
class RunRequest:
    """Run `command` with the recipe read-only at /work (cwd) and /output writable."""

    trial_id: int
    image: str
    command: str  # a shell command line, run by /bin/sh -c
    recipe_dir: Path
    output_dir: Path
    limits: Limits
    env: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""  # the worker holding the trial's lease: a sweep tells attempts apart by it
    # /output's size while the trial runs: a write past it fails inside the sandbox (the
    # Docker runner's volume of this size); None: no cap.
    output_cap_bytes: int | None = None
    # A CPU-seconds budget: the run is killed once its processes used this much CPU time.
    cpu_limit_s: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What the runner observed. `exit_code` is None when the trial never ran."""

    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    wallclock_s: float
    artifact_bytes: int  # total size of the files under output_dir after the run
    log_tail: str  # stdout and stderr interleaved, last LOG_TAIL_BYTES only
    image_digest: str | None  # the image id the trial actually ran on
    isolated: bool  # False for the local runner: no network or filesystem isolation
    infra_error: str | None  # our failure, not the trial's; retry, don't label
    output_full: bool = False  # the trial wrote past `output_cap_bytes`: its writes failed
    removed: tuple[str, ...] = ()  # links, FIFOs, devices taken out of /output before use
    cpu_s: float | None = None  # CPU time of every process of the run; None: not measured here
    cpu_overrun: bool = False  # killed at its CPU-seconds budget
    # cpu_s is the daemon's last sample, not the kernel's final count: up to DAEMON_SAMPLE_S of
    # the run's CPUs may be missing from it (a host whose cgroups are not ours, sandbox.cputime).
    cpu_sampled: bool = False


@dataclass(frozen=True)
class WorkerRequest:
    """The model worker of a split evaluation: the trial's own code, answering the scorer.

    It gets the trial's commit (/work, cwd) and output (/output) read-only, the
    socket's tmpfs, no held-out data and no network; it lives as long as the scorer.
    """

    image: str
    command: str
    recipe_dir: Path
    limits: Limits
    # A copy of HELPERS_DIR where the Docker daemon can see it (beside the trial's output:
    # under a compose deployment's data dir, the same path on the host and in the worker).
    helpers_dir: Path = HELPERS_DIR


def never_ran(reason: str, *, isolated: bool) -> RunResult:
    """The result of a run that never started, for a reason of ours (an infra error)."""
    return RunResult(
        exit_code=None,
        oom_killed=False,
        timed_out=False,
        wallclock_s=0.0,
        artifact_bytes=0,
        log_tail="",
        image_digest=None,
        isolated=isolated,
        infra_error=reason,
    )


@dataclass(frozen=True)
class EvalRequest:
    """Score a finished trial in a second container that the trial never sees.

    The evaluator (cwd /evaluator), the held-out data (/data) and the trial's
    output (/output) are all mounted read-only. With a `worker` (split
    evaluation) the scorer gets no /output: it asks the worker, through the
    socket at `TRIALFORGE_MODEL_SOCKET`, and never runs trial code.
    """

    trial_id: int
    image: str
    command: str  # must print one JSON object of metrics as its last stdout line
    evaluator_dir: Path
    data_dir: Path | None
    output_dir: Path
    limits: Limits
    owner: str = ""
    worker: WorkerRequest | None = None


@dataclass(frozen=True)
class EvalResult:
    """Metrics when the evaluator printed them, else `error` says why there are none.

    `error` is the evaluator's failure (a label for the trial); `infra_error`
    is ours (image missing, daemon down): retry, don't label.
    """

    exit_code: int | None
    timed_out: bool
    metrics: dict[str, object] | None
    error: str | None
    log_tail: str
    infra_error: str | None
    wallclock_s: float = 0.0  # how long the evaluator ran, measured by the runner


class Backend(StrEnum):
    """Which runner executes trials; `auto` picks Docker when its daemon answers."""

    AUTO = "auto"
    DOCKER = "docker"
    LOCAL = "local"


class Runner(Protocol):
    """Executes one request at a time and reports what it measured.

    A trial's own failure is data in the result; a failure of the runner's
    infrastructure is the result's `infra_error`. No per-trial failure
    escapes as an exception. Every implementation passes the same contract
    suite (`tests/sandbox/contract.py`).
    """

    @property
    def isolated(self) -> bool:
        """False when trials can reach the network and the host (the local runner)."""
        ...

    def run(self, request: RunRequest) -> RunResult: ...

    def evaluate(self, request: EvalRequest) -> EvalResult: ...

    def live_trials(self) -> dict[int, set[str]]:
        """Trials that have something running or left behind on this host, with their owners.

        The owners are the requests' `owner`s: a sweep compares them with the
        store to find what a dead worker, or an attempt that lost its lease,
        left behind, then passes those to `sweep`.
        """
        ...

    def sweep(
        self, trial_ids: Collection[int] | None = None, owners: Collection[str] | None = None
    ) -> int:
        """Stop and remove what is left of trials; returns how many were removed.

        Without `trial_ids` it removes every trial's leftovers, including
        those of other live workers sharing the host; with `owners`, only
        what those owners started.
        """
        ...
