"""A trial's moves through the pipeline: claim, heartbeat, finish, reap.

Every transition is a compare-and-set on `trial.status` (and the claiming
worker), so a task delivered twice, a reaper racing a slow worker, or a
cancel racing a finish each resolve to exactly one winner and the loser does
nothing. Times come from the database clock (`db_now`), never a worker's.
Functions only flush; the caller commits.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.domain.seeds import Execution
from app.domain.spec import BudgetUnit, TrialBudget
from app.domain.states import Decision, Label, SearchStatus, TrialStatus
from app.store import events, promotion
from app.store.clock import db_now
from app.store.models import Search, Trial
from sandbox import RunResult
from sandbox.cputime import DAEMON_SAMPLE_S

logger = logging.getLogger(__name__)

ACTOR = "scheduler"


def cas(
    session: Session, trial_id: int, expected: tuple[TrialStatus, ...], **values: object
) -> bool:
    """Move trial `trial_id` out of `expected` statuses; True only for the one caller that did."""
    moved = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.status.in_(expected))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


# In-flight states a worker holds a lease on: a proposal being written, a run.
LEASED = (TrialStatus.PROPOSED, TrialStatus.RUNNING)


def _cas_worker(
    session: Session,
    trial_id: int,
    worker: str,
    statuses: tuple[TrialStatus, ...] = (TrialStatus.RUNNING,),
    **values: object,
) -> bool:
    moved = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.status.in_(statuses), Trial.worker == worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def lock_search(
    session: Session, search_id: int, *, statuses: tuple[SearchStatus, ...] | None = None
) -> bool:
    """Take the search row's lock (stamping it), so ticks, finishes and cancels serialise.

    The lock order is the same everywhere: search, then trial. With
    `statuses`, a search in another status is left alone (False).
    """
    query = update(Search).where(Search.id == search_id)
    if statuses is not None:
        query = query.where(Search.status.in_(statuses))
    locked = session.execute(
        query.values(updated_at=db_now(session)).execution_options(synchronize_session=False)
    )
    return bool(locked.rowcount == 1)  # type: ignore[attr-defined]


def claim(session: Session, trial_id: int, worker: str) -> bool:
    """Take a queued trial for `worker`; False when another delivery already took it."""
    now = db_now(session)
    claimed = cas(
        session,
        trial_id,
        (TrialStatus.QUEUED,),
        status=TrialStatus.RUNNING,
        worker=worker,
        started_at=now,
        heartbeat_at=now,
        attempts=Trial.attempts + 1,
    )
    logger.info("trial.claim trial_id=%s worker=%s won=%s", trial_id, worker, claimed)
    return claimed


def claim_proposal(session: Session, trial_id: int, worker: str) -> bool:
    """Take a trial awaiting its proposal for `worker`; False if another delivery has it."""
    now = db_now(session)
    moved = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.status == TrialStatus.PROPOSED, Trial.worker.is_(None))
        .values(worker=worker, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    claimed = bool(moved.rowcount == 1)  # type: ignore[attr-defined]
    logger.info("proposal.claim trial_id=%s worker=%s won=%s", trial_id, worker, claimed)
    return claimed


def heartbeat(session: Session, trial_id: int, worker: str) -> bool:
    """Renew the lease; False when the trial is no longer this worker's (cancelled, reaped)."""
    return _cas_worker(session, trial_id, worker, LEASED, heartbeat_at=db_now(session))


def mark_pending(session: Session, trial_id: int, worker: str) -> bool:
    """Say the trial beat the best once and is being confirmed on more seeds."""
    return _cas_worker(session, trial_id, worker, decision=Decision.PENDING_CONFIRMATION)


def finish(
    session: Session, trial_id: int, worker: str, execution: Execution, *, max_attempts: int
) -> bool:
    """Store the outcome of a run; False when the trial was taken from this worker meanwhile.

    The search row is locked first, as `tick` and cancel do, so the reaper and
    a cancel cannot change the trial between the check and the write.
    """
    search_id = session.scalar(select(Trial.search_id).where(Trial.id == trial_id))
    if search_id is None:
        return False
    lock_search(session, search_id)
    now = db_now(session)
    trial = session.get(Trial, trial_id, populate_existing=True)
    if trial is None or trial.status != TrialStatus.RUNNING or trial.worker != worker:
        logger.warning("trial.finish_lost trial_id=%s worker=%s", trial_id, worker)
        return False
    verdict, run = execution.verdict, execution.run
    # Every attempt's sandbox time counts, a retried one's too: it was spent.
    trial.wallclock_s = (trial.wallclock_s or 0.0) + execution.train_s
    trial.eval_s = (trial.eval_s or 0.0) + execution.eval_s
    trial.confirm_s = (trial.confirm_s or 0.0) + execution.confirm_s
    if execution.cpu_s is not None:
        trial.cpu_s = (trial.cpu_s or 0.0) + execution.cpu_s
    if verdict.retryable and trial.attempts < max_attempts:
        trial.status, trial.worker, trial.label_reason = TrialStatus.READY, None, verdict.reason
        events.record(
            session,
            search_id=trial.search_id,
            trial_id=trial.id,
            kind="trial.retry",
            actor=worker,
            data={"attempt": trial.attempts, "reason": verdict.reason},
        )
        session.flush()
        return True
    search = session.get(Search, trial.search_id)
    assert search is not None
    trial.status, trial.finished_at = TrialStatus.FINISHED, now
    trial.label, trial.label_reason, trial.score = verdict.label, verdict.reason, verdict.score
    trial.delta = delta_over_parent(session, search, trial)
    if execution.evaluation is not None and execution.evaluation.metrics is not None:
        trial.metrics = execution.evaluation.metrics
    if len(execution.runs) > 1:
        trial.metrics = {**trial.metrics, "runs": list(execution.runs)}
    if len(execution.seeds) > 1:  # every seed's outcome, the failed ones included
        trial.metrics = {**trial.metrics, "seeds": [asdict(run) for run in execution.seeds]}
    if run is not None:
        budget = search.search_spec.budgets.trial
        trial.metrics = {**trial.metrics, "budget": budget_used(budget, trial, run)}
        trial.artifact_bytes = run.artifact_bytes
        trial.log_tail, trial.image_digest, trial.isolated = (
            run.log_tail,
            run.image_digest,
            run.isolated,
        )
    trial.evaluator_digest = execution.evaluator_digest
    if execution.evaluator_changed:
        events.record(
            session,
            search_id=trial.search_id,
            trial_id=trial.id,
            kind="evaluator.changed",
            actor=worker,
            data={"digest": execution.evaluator_digest},
        )
    events.record(
        session,
        search_id=trial.search_id,
        trial_id=trial.id,
        kind="trial.finished",
        actor=worker,
        data={"label": verdict.label, "score": verdict.score},
    )
    if verdict.label is Label.OK:
        trial.decision = promotion.decide(session, search, trial, execution)
    else:  # a failed baseline is still the baseline: the search halts on it, nothing is kept
        trial.decision = Decision.BASELINE if trial.number == 0 else Decision.DISCARD
    session.flush()
    return True


def budget_used(budget: TrialBudget, trial: Trial, run: RunResult) -> dict[str, object]:
    """What the trial's budget counted, in its unit, recorded with the trial."""
    if budget.unit is BudgetUnit.WALLCLOCK:
        return {"unit": budget.unit, "used": run.wallclock_s, "limit": budget.wallclock_s,
                "covers": "the run command"}  # fmt: skip
    if budget.unit is BudgetUnit.CPU_SECONDS:
        how = (f"sampled by the Docker daemon every {DAEMON_SAMPLE_S:g} s (its last moments "
               "uncounted)") if run.cpu_sampled else "counted by the kernel"  # fmt: skip
        return {"unit": budget.unit, "used": run.cpu_s, "limit": budget.limit,
                "covers": f"the CPU time of the run command's processes, {how}"}  # fmt: skip
    used = (trial.metrics or {}).get(budget.unit_metric or "")
    return {"unit": budget.unit, "used": used, "limit": budget.limit,
            "covers": f"the evaluator's {budget.unit_metric}"}  # fmt: skip


def delta_over_parent(session: Session, search: Search, trial: Trial) -> float | None:
    """How much better than its parent the trial scored (negative: worse), by direction."""
    if trial.score is None or trial.parent_id is None:
        return None
    parent_score = session.scalar(select(Trial.score).where(Trial.id == trial.parent_id))
    if parent_score is None:
        return None
    return search.search_spec.evaluator.direction.gain(trial.score, parent_score)


def reap(
    session: Session, search_id: int, *, now: datetime, stale_after_s: float, max_attempts: int
) -> int:
    """Take back leased trials whose worker stopped heartbeating; returns how many.

    A lost run is re-queued (until `max_attempts`, then `infra_error`); a lost
    proposal is `infra_error` at once (the model's work is gone with its
    worker) and, having no recipe, spends no trial budget.
    """
    stale = list(
        session.scalars(
            select(Trial).where(
                Trial.search_id == search_id,
                Trial.status.in_(LEASED),
                Trial.worker.is_not(None),
                Trial.heartbeat_at < now - timedelta(seconds=stale_after_s),
            )
        )
    )
    for trial in stale:
        proposal = trial.status is TrialStatus.PROPOSED
        retry = not proposal and trial.attempts < max_attempts
        values: dict[str, object] = (
            {"status": TrialStatus.READY, "worker": None}
            if retry
            else {
                "status": TrialStatus.FINISHED,
                "label": Label.INFRA_ERROR,
                "label_reason": (
                    f"proposal lost: worker {trial.worker} stopped heartbeating"
                    if proposal
                    else f"worker {trial.worker} lost it {trial.attempts} times"
                ),
                "finished_at": now,
            }
        )
        if not cas(session, trial.id, (trial.status,), **values):
            continue  # it finished (or was cancelled) while we looked
        events.record(
            session,
            search_id=search_id,
            trial_id=trial.id,
            kind="trial.requeued" if retry else "trial.lost",
            actor=ACTOR,
            data={"worker": trial.worker, "attempt": trial.attempts, "proposal": proposal},
        )
        logger.warning("trial.reaped trial_id=%s worker=%s retry=%s", trial.id, trial.worker, retry)
    return len(stale)


def unclaimed(
    session: Session, search_id: int, *, now: datetime, resend_after_s: float
) -> list[Trial]:
    """Trials whose task message went out a while ago and no worker took: send them again.

    A broker that restarted empty (Redis without persistence) or a send that
    failed after its transaction committed leaves such a trial waiting
    forever otherwise. A duplicate message is harmless: every task claims by
    compare-and-set. `sent_at` moves on, so one is re-sent once per period.
    """
    waiting = list(
        session.scalars(
            select(Trial).where(
                Trial.search_id == search_id,
                # IN, not OR, on the status: an index range, not a scan of the search
                Trial.status.in_((TrialStatus.QUEUED, TrialStatus.PROPOSED)),
                or_(Trial.status == TrialStatus.QUEUED, Trial.worker.is_(None)),
                or_(
                    Trial.sent_at.is_(None),
                    Trial.sent_at < now - timedelta(seconds=resend_after_s),
                ),
            )
        )
    )
    for trial in waiting:
        trial.sent_at = now
        logger.warning("trial.resent trial_id=%s status=%s", trial.id, trial.status)
    return waiting
