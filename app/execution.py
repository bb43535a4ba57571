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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from git.exc import GitCommandError

from app.errors import EditRejected
from app.fingerprint import directory_digest
from app.gitstore import GitStore
from app.labels import (
    Verdict,
    gate_passes,
    label,
    metric_value,
    preflight_verdict,
    run_verdict,
)
from app.noise import beats, mean
from app.spec import Gate, NoiseSpec, SearchSpec
from app.states import Label
from sandbox import EvalRequest, EvalResult, Limits, Runner, RunRequest, RunResult

logger = logging.getLogger(__name__)

# Every runner sees this, so a trial killed at its deadline has flushed what it printed.
TRIAL_ENV = {"PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class Execution:
    """The verdict and what it was decided from; `run` is None when the edit never ran.

    `evaluator_digest` is what the evaluator and held-out data hashed to when
    this trial was scored; `evaluator_changed` says it differed from the
    search's, which fails the trial and deserves an event of its own.
    """

    verdict: Verdict
    run: RunResult | None = None
    evaluation: EvalResult | None = None
    evaluator_digest: str | None = None
    evaluator_changed: bool = False
    runs: tuple[float, ...] = ()  # scores of every seed run, the first one first
    confirmation: tuple[float, ...] = ()  # the fresh-seed runs that decide a nominated candidate


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
    evaluator_digest: str | None = None,
    seed: int | None = None,
) -> Execution:
    """Run `commit` of `store` as trial `trial_id` under `spec`; never raises for the trial.

    With a preflight in the spec, it runs first under its own budget and a
    failure ends the trial there. `evaluator_digest` is the search's; the
    evaluator's files and data are hashed again before scoring. With `seed`,
    the recipe finds it in the spec's `noise.seed_env` variable.
    """
    env = dict(TRIAL_ENV)
    if seed is not None and spec.noise is not None:
        env[spec.noise.seed_env] = str(seed)
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

        def run_command(command: str, limits: Limits, into: Path) -> RunResult:
            into.mkdir(exist_ok=True)
            return runner.run(
                RunRequest(
                    trial_id=trial_id,
                    image=spec.image,
                    command=command,
                    recipe_dir=recipe,
                    output_dir=into,
                    limits=limits,
                    env=env,
                )
            )

        if spec.preflight is not None:
            budget = spec.budgets.trial.model_copy(
                update={"wallclock_s": spec.preflight.wallclock_s}
            )
            limits = replace(trial_limits(spec, gpu_ids), wallclock_s=spec.preflight.wallclock_s)
            checked = run_command(spec.preflight.command, limits, Path(work, "preflight"))
            verdict = preflight_verdict(checked, budget)
            if verdict is not None:
                return Execution(verdict, checked)
        run = run_command(spec.run, trial_limits(spec, gpu_ids), output)
        verdict = run_verdict(run, spec.budgets.trial)
        if verdict is not None:
            return Execution(verdict, run)
        data_dir = Path(spec.evaluator.data) if spec.evaluator.data else None
        try:
            digest = directory_digest(Path(spec.evaluator.path), data_dir)
        except OSError as error:
            reason = f"cannot read the evaluator or its data: {error}"
            return Execution(Verdict(Label.INFRA_ERROR, None, reason), run)
        if evaluator_digest is not None and digest != evaluator_digest:
            reason = (
                "the evaluator's files or held-out data changed since the search started "
                f"(digest {digest[:12]}, expected {evaluator_digest[:12]}); not scored"
            )
            return Execution(Verdict(Label.EVALUATOR_ERROR, None, reason), run, None, digest, True)
        evaluation = runner.evaluate(
            EvalRequest(
                trial_id=trial_id,
                image=spec.image,
                command=spec.evaluator.command,
                evaluator_dir=Path(spec.evaluator.path),
                data_dir=data_dir,
                output_dir=output,
                limits=evaluator_limits(spec, gpu_ids),
            )
        )
    verdict = label(run, evaluation, spec)
    runs = (verdict.score,) if verdict.label is Label.OK and verdict.score is not None else ()
    return Execution(verdict, run, evaluation, digest, runs=runs)


def repeat_seeds(
    run_once: Callable[[int], Execution],
    noise: NoiseSpec | None,
    *,
    baseline: bool,
    best_runs: Sequence[float],
    maximize: bool,
    nominated: Callable[[], object] = lambda: None,
    mean_gates: Sequence[Gate] = (),
) -> Execution:
    """Run seed 0, then the seeds the noise spec asks for; one Execution for them all.

    The baseline runs `baseline_runs` seeds (its spread is the noise floor). A
    candidate whose first run beats the best's mean is nominated (`nominated`
    is called, e.g. to show it as pending) and runs `confirm_runs` fresh seeds,
    which then decide. A seed that fails ends the trial with that failure:
    a recipe that crashes on some seeds is not a result. `mean_gates` are
    checked on the mean over the seeds instead of on each run (a run that
    misses one alone still counts).
    """

    def score_of(execution: Execution) -> float | None:
        if execution.runs:
            return execution.runs[0]
        if mean_gates and execution.verdict.label is Label.GATE_MISS:
            return execution.verdict.score
        return None

    first = run_once(0)
    first_score = score_of(first)
    if noise is None or first_score is None:
        return first
    if baseline:
        seeds = range(1, noise.baseline_runs)
    else:
        if not best_runs or not beats([first_score], best_runs, noise_sd=0.0, maximize=maximize):
            return first
        nominated()
        seeds = range(1, noise.confirm_runs + 1)
    executions = [first]
    for seed in seeds:
        more = run_once(seed)
        if score_of(more) is None:
            reason = f"seed {seed}: {more.verdict.reason}"
            return replace(more, verdict=replace(more.verdict, reason=reason))
        executions.append(more)
    runs = tuple(score for e in executions if (score := score_of(e)) is not None)
    centre = mean(runs)
    verdict = Verdict(Label.OK, centre, f"mean {centre:.6g} over {len(runs)} seeds")
    misses = [
        f"{gate.metric} = {value:g} (mean) fails {gate}"
        for gate in mean_gates
        if not gate_passes(gate, value := mean([_metric(e, gate.metric) for e in executions]))
    ]
    if misses:
        verdict = Verdict(Label.GATE_MISS, centre, f"over {len(runs)} seeds: " + "; ".join(misses))
    confirmation = () if baseline else runs[1:]
    return replace(first, verdict=verdict, runs=runs, confirmation=confirmation)


def _metric(execution: Execution, name: str) -> float:
    assert execution.evaluation is not None and execution.evaluation.metrics is not None
    value, _ = metric_value(execution.evaluation.metrics, name)
    return float("nan") if value is None else value
