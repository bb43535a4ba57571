"""Celery tasks: thin shells that claim by compare-and-set, call one service, then schedule.

Task arguments are ids only; every task re-reads the store, so a redelivered
or late message finds its trial already taken (or finished) and does
nothing. Sends happen only after the transaction that decided them has
committed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from billiard.process import current_process
from celery.signals import worker_process_init
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError

from app import loop
from app.config import settings
from app.db import get_engine, session_scope
from app.execution import Execution, execute, repeat_seeds
from app.gitstore import GitStore
from app.labels import Verdict
from app.models import Search, Trial
from app.proposing import Proposal, ProposalFailed, load_job, record_proposal
from app.spec import SearchSpec
from app.states import Direction, Label
from workers import runtime
from workers.agents import AGENTS
from workers.celery_app import PROPOSE_QUEUE, celery

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    """Drop database connections inherited through fork, then clear what dead workers left."""
    get_engine(settings.resolved_database_url).dispose(close=False)
    if set(celery.amqp.queues or {}) - {PROPOSE_QUEUE}:  # a trial worker, of any queue
        runtime.sweep_orphans(
            settings, runtime.runner_for(settings.sandbox_backend, settings.namespace)
        )


def send(sends: list[loop.Send]) -> None:
    for item in sends:
        task = propose if item.task is loop.Task.PROPOSE else run_trial
        task.apply_async((item.trial_id,), **({"queue": item.queue} if item.queue else {}))


def schedule(search_id: int) -> None:
    """Tick the search and send what the tick decided, after it committed."""
    with session_scope(settings.resolved_database_url) as session:
        sends = loop.tick(
            session,
            search_id,
            heartbeat_s=settings.heartbeat_s,
            max_attempts=settings.max_attempts,
        )
    send(sends)


@celery.task(name="trialforge.tick")
def tick(search_id: int) -> None:
    schedule(search_id)


@celery.task(name="trialforge.propose")
def propose(trial_id: int) -> None:
    with session_scope(settings.resolved_database_url) as session:
        job = load_job(session, trial_id)
    if job is None:
        logger.info("proposal.skipped trial_id=%s (no longer awaiting a proposal)", trial_id)
        return
    agent = AGENTS[job.agent.kind](settings)
    outcome: Proposal | ProposalFailed
    try:
        outcome = agent.propose(job, GitStore(job.repo_path))
    except ProposalFailed as failed:
        outcome = failed
    with session_scope(settings.resolved_database_url) as session:
        record_proposal(session, trial_id, outcome)
    schedule(job.search_id)


@celery.task(name="trialforge.run_trial")
def run_trial(trial_id: int) -> None:
    worker = runtime.worker_name()
    with session_scope(settings.resolved_database_url) as session:
        if not loop.claim(session, trial_id, worker):
            return  # a second delivery, or cancelled before it started
        trial = session.get(Trial, trial_id)
        assert trial is not None and trial.commit_sha is not None
        search = session.get(Search, trial.search_id)
        assert search is not None
        search_id, commit, digest = search.id, trial.commit_sha, search.evaluator_digest
        repo_path, spec = Path(search.repo_path), SearchSpec.model_validate(search.spec)
        best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
        best_runs = (best.metrics.get("runs") or [best.score]) if best and best.score else []
        baseline = trial.number == 0
    execution = _execute(
        trial_id, worker, GitStore(repo_path), commit, spec, digest, baseline, best_runs
    )
    with session_scope(settings.resolved_database_url) as session:
        loop.finish(session, trial_id, worker, execution, max_attempts=settings.max_attempts)
    # Tick beside the next task, not before it: when several slots free at once their
    # ticks serialise on the search row, and a slot process waiting on them would
    # leave the trial it is about to be handed waiting too.
    threading.Thread(target=schedule_safely, args=(search_id,), name=f"tick-{search_id}").start()


def _execute(
    trial_id: int,
    worker: str,
    store: GitStore,
    commit: str,
    spec: SearchSpec,
    evaluator_digest: str | None,
    baseline: bool,
    best_runs: list[float],
) -> Execution:
    runner = runtime.runner_for(settings.sandbox_backend, settings.namespace)
    try:
        gpus = runtime.gpu_slot(settings.gpus, spec.budgets.trial.gpus, current_process().index)
    except runtime.NoGpuSlot as error:
        return Execution(Verdict(Label.INFRA_ERROR, None, str(error)))

    def run_once(seed: int) -> Execution:
        return execute(
            store,
            commit,
            spec,
            runner,
            trial_id=trial_id,
            scratch_dir=settings.data_dir / "work",
            gpu_ids=gpus,
            evaluator_digest=evaluator_digest,
            seed=seed,
        )

    def nominated() -> None:
        with session_scope(settings.resolved_database_url) as session:
            loop.mark_pending(session, trial_id, worker)

    with runtime.leased(settings, runner, trial_id, worker):
        logger.info("trial.started trial_id=%s worker=%s gpus=%s", trial_id, worker, gpus)
        return repeat_seeds(
            run_once,
            spec.noise,
            baseline=baseline,
            best_runs=best_runs,
            maximize=spec.evaluator.direction == Direction.MAXIMIZE,
            nominated=nominated,
            mean_gates=spec.evaluator.gates if spec.noise and spec.noise.gates_on_mean else (),
        )


def schedule_forever(interval_s: float, stop: threading.Event) -> None:
    """The periodic sweep: ticks every running search (reaps lost trials, fills slots)."""
    while not stop.is_set():
        with session_scope(settings.resolved_database_url) as session:
            search_ids = loop.active_searches(session)
        for search_id in search_ids:
            schedule_safely(search_id)
        stop.wait(interval_s)


def schedule_safely(search_id: int) -> None:
    try:
        schedule(search_id)
    except (SQLAlchemyError, KombuError, OSError) as error:
        # Deliberate: one failed tick (a dropped connection, a lock timeout) must not
        # stop a sweep or a worker; the periodic sweep retries from the store.
        logger.error("scheduler.tick_failed search_id=%s error=%r", search_id, error)
