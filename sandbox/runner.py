"""The runner plug point: how a trial and its evaluation get executed.

Workers depend on the `Runner` protocol only and pick an implementation by
`RunnerKind` from `RUNNERS`; built-ins register here like any extension
would. Every implementation passes the same contract suite
(`tests/sandbox/contract.py`).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Protocol

from sandbox.contract import EvalRequest, EvalResult, RunRequest, RunResult
from sandbox.docker_runner import DockerRunner
from sandbox.local_runner import LocalRunner


class Runner(Protocol):
    """Executes one request at a time and reports what it measured.

    A trial's own failure is data in the result; a failure of the runner's
    infrastructure is the result's `infra_error`. No per-trial failure
    escapes as an exception.
    """

    @property
    def isolated(self) -> bool:
        """False when trials can reach the network and the host (the local runner)."""
        ...

    def run(self, request: RunRequest) -> RunResult: ...

    def evaluate(self, request: EvalRequest) -> EvalResult: ...

    def live_trials(self) -> set[int]:
        """Ids of the trials that have something running or left behind on this host.

        A worker compares them with the store at start to find what a dead
        worker orphaned, then passes those ids to `sweep`.
        """
        ...

    def sweep(self, trial_ids: Collection[int] | None = None) -> int:
        """Stop and remove what dead workers left running; returns how many were removed.

        Call it at worker start. Without `trial_ids` it removes every trial's
        leftovers, including those of other live workers sharing the host.
        """
        ...


class RunnerKind(StrEnum):
    DOCKER = "docker"
    LOCAL = "local"


RUNNERS: dict[RunnerKind, type[Runner]] = {
    RunnerKind.DOCKER: DockerRunner,
    RunnerKind.LOCAL: LocalRunner,
}


def make_runner(kind: RunnerKind | str) -> Runner:
    """The runner registered for `kind`; raises `SandboxUnavailable` if it cannot work here."""
    return RUNNERS[RunnerKind(kind)]()
