"""A runner that answers at once, for what the trial path does around the sandbox.

It keeps the Runner contract's shape (a no-op run, a passing evaluation) and
records which trials it was asked to sweep, so the path's own work can be
timed (`benchmarks/trial_path.py`) and its fencing checked, with no sandbox
cost in either.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from sandbox import EvalRequest, EvalResult, RunRequest, RunResult


class InstantRunner:
    """Answers every run and evaluation at once; `swept` lists what each sweep named."""

    isolated = True

    def __init__(self, metric: str = "val_acc") -> None:
        self.metric = metric
        self.swept: list[list[int] | None] = []

    def run(self, request: RunRequest) -> RunResult:
        return RunResult(0, False, False, 0.0, 0, "", "sha256:instant", True, None)

    def evaluate(self, request: EvalRequest) -> EvalResult:
        return EvalResult(0, False, {self.metric: random.uniform(0.3, 0.9)}, None, "", None)

    def live_trials(self) -> dict[int, set[str]]:
        return {}

    def sweep(
        self, trial_ids: Collection[int] | None = None, owners: Collection[str] | None = None
    ) -> int:
        self.swept.append(None if trial_ids is None else sorted(trial_ids))
        return 0
