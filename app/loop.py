"""The search loop's state changes: schedule, claim, heartbeat, finish, reap.

Every transition is a compare-and-set on `trial.status` (and the claiming
worker), so a task delivered twice, a reaper racing a slow worker, or a
cancel racing a finish each resolve to exactly one winner and the loser does
nothing. Times come from the database clock (`db_now`), never a worker's.
Functions flush and return what to enqueue; the caller commits and only then
sends (a rolled-back tick sends nothing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from random import Random

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app import events, rollup
from app.execution import Execution
from app.models import Agent, Search, Trial
from app.noise import beats, spread
from app.scheduler import SearchState, eligible, plan, resting
from app.selection import Candidate, select_parent
from app.spec import BudgetUnit, SearchSpec
from app.states import Decision, Direction, Label, SearchStatus, TrialStatus

logger = logging.getLogger(__name__)

STALE_HEARTBEATS = 2  # a running trial is lost after this many missed heartbeats
ACTOR = "scheduler"
CANDIDATE_LIMIT = 50  # kept trials a tournament draws from (the best ones)
STREAK_SEEN = 10  # latest proposals per agent read for an endpoint-failure streak


class Task(StrEnum):
    PROPOSE = "propose"
    RUN = "run"


@dataclass(frozen=True)
class Send:
    """A task to enqueue once the transaction that decided it has committed."""

    task: Task
    trial_id: int
    queue: str | None = None  # a run's trial queue (the search's); None: the task's own


def db_now(session: Session) -> datetime:
    """The database's clock now, tz-aware UTC (SQLite returns text, Postgres a datetime).

    Not the transaction's start: a tick or finish that waited on the search
    row's lock must stamp the moment it acted, or dispatch and busy times
    would include the wait.
    """
    if session.get_bind().dialect.name == "sqlite":
        # CURRENT_TIMESTAMP has whole seconds on SQLite; leases and dispatch times need ms.
        value = session.scalar(select(func.strftime("%Y-%m-%d %H:%M:%f", "now")))
    else:
        value = session.scalar(select(func.clock_timestamp()))
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cas(
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


def tick(session: Session, search_id: int, *, heartbeat_s: float, max_attempts: int) -> list[Send]:
    """One scheduling step for a search: reap, dispatch, propose, or halt."""
    # Taking the search row first serialises concurrent ticks of one search.
    locked = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.status == SearchStatus.RUNNING)
        .values(updated_at=db_now(session))
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]
        return []
    now = db_now(session)
    search = session.get(Search, search_id, populate_existing=True)
    assert search is not None
    spec = SearchSpec.model_validate(search.spec)
    reap(
        session,
        search_id,
        now=now,
        stale_after_s=STALE_HEARTBEATS * heartbeat_s,
        max_attempts=max_attempts,
    )
    state = _state(session, search, spec, now)
    decision = plan(state)
    sends: list[Send] = []
    for trial_id in decision.dispatch:
        if _cas(session, trial_id, (TrialStatus.READY,), status=TrialStatus.QUEUED, queued_at=now):
            sends.append(Send(Task.RUN, trial_id, spec.budgets.trial.queue))
    if decision.cancel_ready:
        session.execute(
            update(Trial)
            .where(Trial.search_id == search_id, Trial.status == TrialStatus.READY)
            .values(status=TrialStatus.CANCELLED, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    if decision.propose:
        sends += _new_proposals(session, search, spec, decision.propose, now)
    if decision.halt is not None:
        search.status, search.halt_reason, search.finished_at = (
            SearchStatus.FINISHED,
            decision.halt,
            now,
        )
        events.record(
            session,
            search_id=search_id,
            kind="search.finished",
            actor=ACTOR,
            data={"reason": decision.halt},
        )
        logger.info("search.halted search_id=%s reason=%s", search_id, decision.halt)
    rollup.advance(session, search, Direction(spec.evaluator.direction))
    session.flush()
    return sends


def _state(session: Session, search: Search, spec: SearchSpec, now: datetime) -> SearchState:
    by_status: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(Trial.status, func.count())
            .where(Trial.search_id == search.id)
            .group_by(Trial.status)
        )
    }
    ready = list(
        session.scalars(
            select(Trial.id)
            .where(Trial.search_id == search.id, Trial.status == TrialStatus.READY)
            .order_by(Trial.id)
        )
    )
    cost = session.scalar(
        select(func.coalesce(func.sum(Trial.cost_usd), 0.0)).where(Trial.search_id == search.id)
    )
    baseline = session.execute(
        select(Trial.status, Trial.label).where(Trial.search_id == search.id, Trial.number == 0)
    ).one()
    agent_counts: dict[str, int] = {
        name: count
        for name, count in session.execute(
            select(Agent.name, func.count(Trial.id))
            .join(Trial, Trial.agent_id == Agent.id)
            .where(Agent.search_id == search.id)
            .group_by(Agent.name)
        )
    }
    winners = session.scalar(
        select(func.count(func.distinct(Trial.agent_id))).where(
            Trial.search_id == search.id, Trial.label == Label.OK, Trial.agent_id.is_not(None)
        )
    )
    endpoint_failed = session.scalar(  # they are not trials of an idea: no budget spent
        select(func.count()).where(
            Trial.search_id == search.id,
            Trial.label == Label.INFRA_ERROR,
            Trial.commit_sha.is_(None),  # failed while proposing: no recipe was ever made
        )
    )
    total = sum(count for status, count in by_status.items() if status != TrialStatus.CANCELLED)
    best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
    best_number = best.number if best is not None else 0
    best_at = (best.finished_at if best is not None else None) or search.created_at
    since_best = (
        session.scalar(
            select(func.count()).where(
                Trial.search_id == search.id,
                Trial.number > best_number,
                Trial.status == TrialStatus.FINISHED,
                or_(Trial.label != Label.INFRA_ERROR, Trial.commit_sha.is_not(None)),
            )
        )
        or 0
    )
    return SearchState(
        status=search.status,
        trials_total=total - (endpoint_failed or 0),
        proposing=by_status.get(TrialStatus.PROPOSED, 0),
        ready=ready,
        queued=by_status.get(TrialStatus.QUEUED, 0),
        running=by_status.get(TrialStatus.RUNNING, 0),
        cost_usd=float(cost or 0.0),
        elapsed_s=(now - search.created_at).total_seconds(),
        baseline_label=baseline.label if baseline.status == TrialStatus.FINISHED else None,
        max_trials=spec.budgets.search.max_trials,
        max_concurrent=spec.budgets.search.max_concurrent,
        max_cost_usd=spec.budgets.search.max_cost_usd,
        deadline_s=spec.budgets.search.deadline,
        trials_since_best=since_best,
        seconds_since_best=(now - best_at).total_seconds(),
        stagnation_trials=spec.budgets.search.stagnation_trials,
        stagnation_s=spec.budgets.search.stagnation_s,
        agent_weights=eligible(
            [(a.name, a.kind, a.weight) for a in spec.agents],
            combinable=(winners or 0) >= 2,
            resting=_resting(session, search, now),
        ),
        agent_counts=agent_counts,
    )


def _resting(session: Session, search: Search, now: datetime) -> set[str]:
    """Agents resting after their model endpoint failed their latest proposals in a row."""
    failures: dict[str, tuple[int, float]] = {}
    for agent in search.agents:
        latest = session.execute(
            select(Trial.label, Trial.commit_sha, Trial.finished_at)
            .where(Trial.agent_id == agent.id)
            .order_by(Trial.number.desc())
            .limit(STREAK_SEEN)
        ).all()
        streak = 0
        for label, commit, _ in latest:
            if label is not Label.INFRA_ERROR or commit is not None:
                break
            streak += 1
        if streak:
            failed_at = latest[0].finished_at or now
            failures[agent.name] = (streak, (now - failed_at).total_seconds())
    rest = resting(failures)
    if rest:
        logger.warning("agents.resting search_id=%s agents=%s", search.id, sorted(rest))
    return rest


def _new_proposals(
    session: Session, search: Search, spec: SearchSpec, agents: tuple[str, ...], now: datetime
) -> list[Send]:
    rows = {agent.name: agent for agent in search.agents}
    number = session.scalar(select(func.max(Trial.number)).where(Trial.search_id == search.id))
    baseline_id = session.scalar(
        select(Trial.id).where(Trial.search_id == search.id, Trial.number == 0)
    )
    assert number is not None and baseline_id is not None  # every search has its baseline
    candidates = _kept(session, search.id, Direction(spec.evaluator.direction))
    sends = []
    for name in agents:
        number += 1
        parent_id = select_parent(
            candidates,
            fallback=baseline_id,
            direction=spec.evaluator.direction,
            strategy=spec.selection,
            rng=Random(search.id * 1_000_003 + number),
        )
        trial = Trial(
            search_id=search.id,
            number=number,
            parent_id=parent_id,
            agent_id=rows[name].id,
            status=TrialStatus.PROPOSED,
            image=spec.image,
            created_at=now,
        )
        session.add(trial)
        session.flush()
        sends.append(Send(Task.PROPOSE, trial.id))
    return sends


def _kept(session: Session, search_id: int, direction: Direction) -> list[Candidate]:
    order = Trial.score.desc() if direction is Direction.MAXIMIZE else Trial.score.asc()
    rows = session.execute(
        select(Trial.id, Trial.number, Trial.score)
        .where(Trial.search_id == search_id, Trial.label == Label.OK, Trial.score.is_not(None))
        .order_by(order, Trial.number)
        .limit(CANDIDATE_LIMIT)
    )
    return [Candidate(row.id, row.number, row.score) for row in rows]


def claim(session: Session, trial_id: int, worker: str) -> bool:
    """Take a queued trial for `worker`; False when another delivery already took it."""
    now = db_now(session)
    claimed = _cas(
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


def heartbeat(session: Session, trial_id: int, worker: str) -> bool:
    """Renew the lease; False when the trial is no longer this worker's (cancelled, reaped)."""
    return _cas_worker(session, trial_id, worker, heartbeat_at=db_now(session))


def finish(
    session: Session, trial_id: int, worker: str, execution: Execution, *, max_attempts: int
) -> bool:
    """Store the outcome of a run; False when the trial was taken from this worker meanwhile.

    The search row is locked first, as `tick` and cancel do, so the reaper and
    a cancel cannot change the trial between the check and the write (and the
    lock order is the same everywhere: search, then trial).
    """
    search_id = session.scalar(select(Trial.search_id).where(Trial.id == trial_id))
    if search_id is None:
        return False
    session.execute(
        update(Search)
        .where(Search.id == search_id)
        .values(updated_at=db_now(session))
        .execution_options(synchronize_session=False)
    )
    now = db_now(session)
    trial = session.get(Trial, trial_id, populate_existing=True)
    if trial is None or trial.status != TrialStatus.RUNNING or trial.worker != worker:
        logger.warning("trial.finish_lost trial_id=%s worker=%s", trial_id, worker)
        return False
    verdict, run = execution.verdict, execution.run
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
    trial.status, trial.finished_at = TrialStatus.FINISHED, now
    trial.label, trial.label_reason, trial.score = verdict.label, verdict.reason, verdict.score
    trial.delta = _delta(session, trial)
    if execution.evaluation is not None and execution.evaluation.metrics is not None:
        trial.metrics = execution.evaluation.metrics
    if len(execution.runs) > 1:
        trial.metrics = {**trial.metrics, "runs": list(execution.runs)}
    if run is not None:
        trial.metrics = {**trial.metrics, "budget": _budget_used(session, trial, run.wallclock_s)}
    if run is not None:
        trial.wallclock_s, trial.artifact_bytes = run.wallclock_s, run.artifact_bytes
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
    trial.decision = _decide(session, trial, execution) if verdict.label is Label.OK else None
    if trial.decision is None:
        trial.decision = Decision.DISCARD
    session.flush()
    return True


def _budget_used(session: Session, trial: Trial, wallclock_s: float) -> dict[str, object]:
    """What the trial's budget counted, in its unit, recorded with the trial."""
    search = session.get(Search, trial.search_id)
    assert search is not None
    budget = SearchSpec.model_validate(search.spec).budgets.trial
    if budget.unit is BudgetUnit.WALLCLOCK:
        return {"unit": budget.unit, "used": wallclock_s, "limit": budget.wallclock_s,
                "covers": "the run command"}  # fmt: skip
    used = (trial.metrics or {}).get(budget.unit_metric or "")
    return {"unit": budget.unit, "used": used, "limit": budget.limit,
            "covers": f"the evaluator's {budget.unit_metric}"}  # fmt: skip


def mark_pending(session: Session, trial_id: int, worker: str) -> bool:
    """Say the trial beat the best once and is being confirmed on more seeds."""
    return _cas_worker(session, trial_id, worker, decision=Decision.PENDING_CONFIRMATION)


def _cas_worker(session: Session, trial_id: int, worker: str, **values: object) -> bool:
    moved = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.status == TrialStatus.RUNNING, Trial.worker == worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def _delta(session: Session, trial: Trial) -> float | None:
    """How much better than its parent the trial scored (negative: worse), by direction."""
    if trial.score is None or trial.parent_id is None:
        return None
    parent_score = session.scalar(select(Trial.score).where(Trial.id == trial.parent_id))
    if parent_score is None:
        return None
    search = session.get(Search, trial.search_id)
    assert search is not None
    maximize = search.spec["evaluator"]["direction"] == Direction.MAXIMIZE
    return trial.score - parent_score if maximize else parent_score - trial.score


def _decide(session: Session, trial: Trial, execution: Execution) -> Decision:
    """Keep (make it the new best) or discard a scored trial; the baseline sets the noise floor.

    Without a noise spec a strict improvement is kept. With one, only a
    candidate whose confirmation seeds beat the best's runs past the noise
    floor is (`app.noise.beats`); a nominated candidate never confirmed is not.
    """
    search = session.get(Search, trial.search_id)
    assert search is not None and trial.score is not None
    spec = SearchSpec.model_validate(search.spec)
    maximize = spec.evaluator.direction == Direction.MAXIMIZE
    current = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
    if trial.number == 0:
        if len(execution.runs) > 1:
            search.noise_sd = spread(execution.runs)
        _judge_early(session, search, spec, trial, current)
        return Decision.BASELINE
    if current is None or current.score is None:
        keep = True
    elif spec.noise is None:
        gain = trial.score - current.score
        keep = gain > 0 if maximize else gain < 0
    else:
        best_runs = current.metrics.get("runs") or [current.score]
        keep = bool(execution.confirmation) and beats(
            execution.confirmation,
            best_runs,
            noise_sd=search.noise_sd or 0.0,
            maximize=maximize,
            rule=spec.noise.rule,
            k=spec.noise.k,
            alpha=spec.noise.alpha,
        )
    if keep:
        _make_best(session, search, trial, current)
    return Decision.KEEP if keep else Decision.DISCARD


def _judge_early(
    session: Session, search: Search, spec: SearchSpec, baseline: Trial, current: Trial | None
) -> None:
    """Judge the trials that finished before the baseline, now that it has a score.

    With nothing to compare to, they were kept provisionally. One stays kept
    only if it strictly beats the baseline, and only without a noise spec:
    no noise floor had been measured when it ran. If the provisional best
    does not stay, the baseline is the best.
    """
    assert baseline.score is not None
    maximize = spec.evaluator.direction == Direction.MAXIMIZE
    early = session.scalars(
        select(Trial).where(
            Trial.search_id == search.id,
            Trial.id != baseline.id,
            Trial.status == TrialStatus.FINISHED,
            Trial.score.is_not(None),
        )
    )
    for trial in early:
        assert trial.score is not None
        gain = trial.score - baseline.score if maximize else baseline.score - trial.score
        if trial.parent_id == baseline.id:
            trial.delta = gain
        if trial.decision is Decision.KEEP and (spec.noise is not None or gain <= 0):
            trial.decision = Decision.DISCARD
            events.record(
                session,
                search_id=search.id,
                trial_id=trial.id,
                kind="trial.discarded",
                actor=ACTOR,
                data={"reason": "finished before the baseline and does not beat it"},
            )
    if current is None or current.decision is not Decision.KEEP:
        _make_best(session, search, baseline, current)


def _make_best(session: Session, search: Search, trial: Trial, current: Trial | None) -> None:
    search.best_trial_id = trial.id
    events.record(
        session,
        search_id=search.id,
        trial_id=trial.id,
        kind="search.new_best",
        actor=ACTOR,
        data={"score": trial.score, "previous": current.score if current else None},
    )


def reap(
    session: Session, search_id: int, *, now: datetime, stale_after_s: float, max_attempts: int
) -> int:
    """Take back running trials whose worker stopped heartbeating; returns how many."""
    stale = list(
        session.scalars(
            select(Trial).where(
                Trial.search_id == search_id,
                Trial.status == TrialStatus.RUNNING,
                Trial.heartbeat_at < now - timedelta(seconds=stale_after_s),
            )
        )
    )
    for trial in stale:
        retry = trial.attempts < max_attempts
        values: dict[str, object] = (
            {"status": TrialStatus.READY, "worker": None}
            if retry
            else {
                "status": TrialStatus.FINISHED,
                "label": Label.INFRA_ERROR,
                "label_reason": f"worker {trial.worker} lost it {trial.attempts} times",
                "finished_at": now,
            }
        )
        if not _cas(session, trial.id, (TrialStatus.RUNNING,), **values):
            continue  # it finished (or was cancelled) while we looked
        events.record(
            session,
            search_id=search_id,
            trial_id=trial.id,
            kind="trial.requeued" if retry else "trial.lost",
            actor=ACTOR,
            data={"worker": trial.worker, "attempt": trial.attempts},
        )
        logger.warning("trial.reaped trial_id=%s worker=%s retry=%s", trial.id, trial.worker, retry)
    return len(stale)


def active_searches(session: Session) -> list[int]:
    return list(session.scalars(select(Search.id).where(Search.status == SearchStatus.RUNNING)))
