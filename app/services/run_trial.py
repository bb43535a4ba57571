"""Runs one trial end to end: claim, legality check, sandboxed runs over seeds, evaluation, finish.

`run` is what the trial task calls: it claims the trial by compare-and-set
(a second delivery does nothing), reads what the run needs in that one
transaction, runs it with no session open (under a lease that a heartbeat
thread renews), and stores the outcome. `execute` is one seed's run and
knows no database: everything the trial could forge is decided there or
below: the commit is re-checked against the protected paths before anything
runs, the runner measures wall-clock and artifact size itself, and the
evaluator runs from the service's own copy in a container the trial never
shares.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from git.exc import GitCommandError

from app.config import Settings
from app.db import session_scope
from app.domain.labels import Verdict, label, preflight_verdict, run_verdict
from app.domain.placement import NoGpuSlot, gpu_slot
from app.domain.seeds import Execution, repeat_seeds
from app.domain.spec import BudgetUnit, SearchSpec
from app.domain.states import Label
from app.errors import EditRejected
from app.fingerprint import directory_digest
from app.gitstore import GitStore
from app.services.hosts import leased, scratch_prefix
from app.store import transitions
from app.store.models import Search, Trial
from app.store.promotion import best_runs, best_seeds
from sandbox import EvalRequest, Limits, Runner, RunRequest, RunResult, WorkerRequest
from sandbox.contract import HELPERS_DIR

logger = logging.getLogger(__name__)

# Every runner sees this, so a trial killed at its deadline has flushed what it printed.
TRIAL_ENV = {"PYTHONUNBUFFERED": "1"}


def trial_limits(spec: SearchSpec, gpu_ids: tuple[str, ...] = ()) -> Limits:
    budget = spec.budgets.trial
    return Limits(
        wallclock_s=budget.wallclock_s,
        memory_bytes=int(budget.memory),
        cpus=budget.cpus,
        gpu_ids=gpu_ids,
    )


def evaluator_limits(spec: SearchSpec, gpu_ids: tuple[str, ...] = ()) -> Limits:
    """The evaluator's own budget (CPUs default to the trial's); it shares the trial's GPU
    slot (scoring may need it)."""
    evaluator = spec.evaluator
    return Limits(
        wallclock_s=evaluator.wallclock_s,
        memory_bytes=int(evaluator.memory),
        cpus=evaluator.cpus or spec.budgets.trial.cpus,
        gpu_ids=gpu_ids,
    )


def worker_limits(spec: SearchSpec, gpu_ids: tuple[str, ...] = ()) -> Limits:
    """The model worker's budget (the trial's memory and CPUs unless the spec says); its
    wall-clock is the evaluator's: it lives as long as the scorer."""
    worker, budget = spec.evaluator.worker, spec.budgets.trial
    assert worker is not None
    return Limits(
        wallclock_s=spec.evaluator.wallclock_s,
        memory_bytes=int(worker.memory or budget.memory),
        cpus=worker.cpus or budget.cpus,
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
    owner: str = "",
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
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix=scratch_prefix(trial_id)) as work:
        recipe, output, helpers = Path(work, "recipe"), Path(work, "output"), Path(work, "helpers")
        try:
            store.export(commit, recipe)
            output.mkdir()
            if spec.evaluator.worker is not None:  # where the Docker daemon sees it too
                shutil.copytree(HELPERS_DIR, helpers)
        except (OSError, GitCommandError) as error:
            logger.error("execution.export_failed trial_id=%s error=%s", trial_id, error)
            return Execution(Verdict(Label.INFRA_ERROR, None, f"cannot export {commit}: {error}"))

        artifact_cap = spec.budgets.trial.artifact_max_bytes
        cap = None if artifact_cap is None else int(artifact_cap)
        cpu_limit = (
            spec.budgets.trial.limit if spec.budgets.trial.unit is BudgetUnit.CPU_SECONDS else None
        )

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
                    owner=owner,
                    output_cap_bytes=cap,
                    cpu_limit_s=cpu_limit,
                )
            )

        preflight_s, preflight_cpu = 0.0, None
        if spec.preflight is not None:
            budget = spec.budgets.trial.model_copy(
                update={"wallclock_s": spec.preflight.wallclock_s}
            )
            limits = replace(trial_limits(spec, gpu_ids), wallclock_s=spec.preflight.wallclock_s)
            checked = run_command(spec.preflight.command, limits, Path(work, "preflight"))
            preflight_s, preflight_cpu = checked.wallclock_s, checked.cpu_s
            verdict = preflight_verdict(checked, budget)
            if verdict is not None:
                return Execution(verdict, checked, train_s=preflight_s, cpu_s=preflight_cpu)
        run = run_command(spec.run, trial_limits(spec, gpu_ids), output)
        train_s = preflight_s + run.wallclock_s
        cpu_s = _added(preflight_cpu, run.cpu_s)
        verdict = run_verdict(run, spec.budgets.trial)
        if verdict is not None:
            return Execution(verdict, run, train_s=train_s, cpu_s=cpu_s)
        data_dir = Path(spec.evaluator.data) if spec.evaluator.data else None
        try:
            digest = directory_digest(Path(spec.evaluator.path), data_dir)
        except OSError as error:
            reason = f"cannot read the evaluator or its data: {error}"
            return Execution(
                Verdict(Label.INFRA_ERROR, None, reason), run, train_s=train_s, cpu_s=cpu_s
            )
        if evaluator_digest is not None and digest != evaluator_digest:
            reason = (
                "the evaluator's files or held-out data changed since the search started "
                f"(digest {digest[:12]}, expected {evaluator_digest[:12]}); not scored"
            )
            changed = Verdict(Label.EVALUATOR_ERROR, None, reason)
            return Execution(changed, run, None, digest, True, train_s=train_s, cpu_s=cpu_s)
        evaluation = runner.evaluate(
            EvalRequest(
                trial_id=trial_id,
                image=spec.evaluator.image or spec.image,
                command=spec.evaluator.command,
                evaluator_dir=Path(spec.evaluator.path),
                data_dir=data_dir,
                output_dir=output,
                limits=evaluator_limits(spec, gpu_ids),
                owner=owner,
                worker=None
                if spec.evaluator.worker is None
                else WorkerRequest(
                    image=spec.image,
                    command=spec.evaluator.worker.command,
                    recipe_dir=recipe,
                    limits=worker_limits(spec, gpu_ids),
                    helpers_dir=helpers,
                ),
            )
        )
    verdict = label(run, evaluation, spec)
    runs = (verdict.score,) if verdict.label is Label.OK and verdict.score is not None else ()
    return Execution(
        verdict,
        run,
        evaluation,
        digest,
        runs=runs,
        train_s=train_s,
        eval_s=evaluation.wallclock_s,
        cpu_s=cpu_s,
    )


def _added(first: float | None, second: float | None) -> float | None:
    """The sum of two measures, or None when neither was measured."""
    return None if first is None and second is None else (first or 0.0) + (second or 0.0)


@dataclass(frozen=True)
class Claimed:
    """What a claimed trial's run needs, read in the transaction that claimed it."""

    trial_id: int
    search_id: int
    commit: str
    spec: SearchSpec
    repo_path: Path
    evaluator_digest: str | None
    baseline: bool
    best_runs: tuple[float, ...]
    best_seeds: tuple[int, ...]
    noise_sd: float
    attempt: int = 1  # this claim's attempt: 1 unless an earlier one was lost or failed


def claim(settings: Settings, trial_id: int, worker: str) -> Claimed | None:
    """Take a queued trial for `worker`; None when another delivery (or a cancel) took it."""
    with session_scope(settings.resolved_database_url) as session:
        if not transitions.claim(session, trial_id, worker):
            return None
        trial = session.get(Trial, trial_id)
        assert trial is not None and trial.commit_sha is not None
        search = session.get(Search, trial.search_id)
        assert search is not None
        best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
        return Claimed(
            trial_id=trial_id,
            search_id=search.id,
            commit=trial.commit_sha,
            spec=search.search_spec,
            repo_path=Path(search.repo_path),
            evaluator_digest=search.evaluator_digest,
            baseline=trial.number == 0,
            best_runs=tuple(best_runs(best)),
            best_seeds=tuple(best_seeds(best)),
            noise_sd=search.noise_sd or 0.0,
            attempt=trial.attempts,
        )


def run(
    settings: Settings, runner: Runner, trial_id: int, *, worker: str, process_index: int
) -> int | None:
    """Claim, run and finish trial `trial_id`; the search to tick next, or None if not ours.

    `process_index` picks this worker process's slot of the host's GPUs, so
    two trials on one host never share a device.
    """
    claimed = claim(settings, trial_id, worker)
    if claimed is None:
        return None
    # Fencing: what an earlier attempt of this trial left on this host (its worker died, or
    # lost the lease) is gone before this attempt starts, so the two never overlap here. A
    # first attempt has no earlier one: it skips the daemon round trip.
    if claimed.attempt > 1:
        runner.sweep([trial_id])
    try:
        execution = _execute_claimed(settings, runner, claimed, worker, process_index)
    except Exception as error:  # any failure of ours ends as a retried infra_error
        logger.exception("trial.execution_failed trial_id=%s", trial_id)
        reason = f"the trial worker failed: {type(error).__name__}: {error}"
        execution = Execution(Verdict(Label.INFRA_ERROR, None, reason))
    with session_scope(settings.resolved_database_url) as session:
        transitions.finish(session, trial_id, worker, execution, max_attempts=settings.max_attempts)
    return claimed.search_id


def _execute_claimed(
    settings: Settings, runner: Runner, claimed: Claimed, worker: str, process_index: int
) -> Execution:
    spec = claimed.spec
    try:
        gpus = gpu_slot(settings.gpus, spec.budgets.trial.gpus, process_index)
    except NoGpuSlot as error:
        return Execution(Verdict(Label.INFRA_ERROR, None, str(error)))
    store = GitStore(claimed.repo_path)

    def run_once(seed: int) -> Execution:
        return execute(
            store,
            claimed.commit,
            spec,
            runner,
            trial_id=claimed.trial_id,
            scratch_dir=settings.data_dir / "work",
            gpu_ids=gpus,
            evaluator_digest=claimed.evaluator_digest,
            seed=seed,
            owner=worker,
        )

    def nominate() -> None:
        with session_scope(settings.resolved_database_url) as session:
            transitions.mark_pending(session, claimed.trial_id, worker)

    with leased(
        settings,
        claimed.trial_id,
        worker,
        on_lost=lambda: runner.sweep([claimed.trial_id], owners=[worker]),
    ):
        logger.info("trial.started trial_id=%s worker=%s gpus=%s", claimed.trial_id, worker, gpus)
        return repeat_seeds(
            run_once,
            spec.noise,
            baseline=claimed.baseline,
            best_runs=claimed.best_runs,
            best_seeds=claimed.best_seeds,
            noise_sd=claimed.noise_sd,
            direction=spec.evaluator.direction,
            nominate=nominate,
            mean_gates=spec.evaluator.gates if spec.noise and spec.noise.gates_on_mean else (),
        )
