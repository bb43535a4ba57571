"""Runs one trial end to end: legality check, sandboxed run, evaluation, verdict.

No database and no queue: the worker claims a trial, calls `execute`, and
stores what comes back. Everything the trial could forge is decided here or
below: the commit is re-checked against the protected paths before anything
runs, the runner measures wall-clock and artifact size itself, and the
evaluator runs from the service's own copy in a container the trial never
shares.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from git.exc import GitCommandError

from app.errors import EditRejected
from app.gitstore import GitStore
from app.labels import Verdict, label, run_verdict
from app.spec import SearchSpec
from app.states import Label
from sandbox import EvalRequest, EvalResult, Limits, Runner, RunRequest, RunResult

logger = logging.getLogger(__name__)

# Every runner sees this, so a trial killed at its deadline has flushed what it printed.
TRIAL_ENV = {"PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class Execution:
    """The verdict and what it was decided from; `run` is None when the edit never ran."""

    verdict: Verdict
    run: RunResult | None = None
    evaluation: EvalResult | None = None


def trial_limits(spec: SearchSpec, gpu_ids: tuple[str, ...] = ()) -> Limits:
    budget = spec.budgets.trial
    return Limits(
        wallclock_s=budget.wallclock_s,
        memory_bytes=int(budget.memory),
        cpus=budget.cpus,
        gpu_ids=gpu_ids,
    )


def evaluator_limits(spec: SearchSpec, gpu_ids: tuple[str, ...] = ()) -> Limits:
    """The evaluator's own budget; it shares the trial's GPU slot (scoring may need it)."""
    evaluator = spec.evaluator
    return Limits(
        wallclock_s=evaluator.wallclock_s,
        memory_bytes=int(evaluator.memory),
        cpus=spec.budgets.trial.cpus,
        gpu_ids=gpu_ids,
    )


def execute(
    store: GitStore,
    commit: str,
    spec: SearchSpec,
    runner: Runner,
    *,
    trial_id: int,
    scratch_dir: Path,
    gpu_ids: tuple[str, ...] = (),
) -> Execution:
    """Run `commit` of `store` as trial `trial_id` under `spec`; never raises for the trial."""
    try:
        store.check_commit(commit, spec.evaluator.protected)
    except EditRejected as rejection:
        return Execution(Verdict(Label(rejection.label), None, rejection.reason))
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix=f"trial-{trial_id}-") as work:
        recipe, output = Path(work, "recipe"), Path(work, "output")
        try:
            store.export(commit, recipe)
            output.mkdir()
        except (OSError, GitCommandError) as error:
            logger.error("execution.export_failed trial_id=%s error=%s", trial_id, error)
            return Execution(Verdict(Label.INFRA_ERROR, None, f"cannot export {commit}: {error}"))
        run = runner.run(
            RunRequest(
                trial_id=trial_id,
                image=spec.image,
                command=spec.run,
                recipe_dir=recipe,
                output_dir=output,
                limits=trial_limits(spec, gpu_ids),
                env=TRIAL_ENV,
            )
        )
        verdict = run_verdict(run, spec.budgets.trial)
        if verdict is not None:
            return Execution(verdict, run)
        evaluation = runner.evaluate(
            EvalRequest(
                trial_id=trial_id,
                image=spec.image,
                command=spec.evaluator.command,
                evaluator_dir=Path(spec.evaluator.path),
                data_dir=Path(spec.evaluator.data) if spec.evaluator.data else None,
                output_dir=output,
                limits=evaluator_limits(spec, gpu_ids),
            )
        )
    return Execution(label(run, evaluation, spec), run, evaluation)
