"""One scheduling step of a search: reap, dispatch, propose, or halt.

The tick reads a snapshot of the search (`SearchState`), lets the pure
planner (`app.domain.scheduling.plan`) decide, and writes the decision by
compare-and-set. It flushes and returns what to enqueue; the caller commits
and only then sends (a rolled-back tick sends nothing).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from random import Random

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.domain.leaderboard import BASELINE_AGENT
from app.domain.scheduling import SearchState, eligible, plan, resting
from app.domain.selection import Candidate, select_parent
from app.domain.spec import SearchSpec
from app.domain.states import KEPT, Label, SearchStatus, TrialStatus
from app.store import events, rollup
from app.store.clock import db_now
from app.store.models import Event, Search, Trial
from app.store.ordering import best_first
from app.store.rollup import tallies
from app.store.transitions import cas, lock_search, reap, unclaimed

logger = logging.getLogger(__name__)

TICKED = (SearchStatus.RUNNING, SearchStatus.PAUSED)  # what a tick looks at

STALE_HEARTBEATS = 3  # a leased trial is lost after this many heartbeats without a renewal
RESEND_HEARTBEATS = 10  # a task message no worker took is sent again after this many
ACTOR = "scheduler"
CANDIDATE_LIMIT = 50  # kept trials a tournament draws from (the best ones)
STREAK_SEEN = 10  # latest proposals per agent read for an endpoint-failure streak
BASELINE_REASON_CHARS = 500  # of a failed baseline's reason, in the halt reason


class Task(StrEnum):
    PROPOSE = "propose"
    RUN = "run"


@dataclass(frozen=True)
class Send:
    """A task to enqueue once the transaction that decided it has committed."""

    task: Task
    trial_id: int
    queue: str | None = None  # a run's trial queue (the search's); None: the task's own


def tick(session: Session, search_id: int, *, heartbeat_s: float, max_attempts: int) -> list[Send]:
    """One scheduling step for a search: recover, then dispatch, propose, or halt.

    Recovery (lost leases, messages no worker took) runs for a paused search
    too, so nothing it has in flight sits stuck for the length of a pause.
    """
    # Taking the search row first serialises concurrent ticks of one search.
    if not lock_search(session, search_id, statuses=TICKED):
        return []
    now = db_now(session)
    search = session.get(Search, search_id, populate_existing=True)
    assert search is not None
    spec = search.search_spec
    reap(
        session,
        search_id,
        now=now,
        stale_after_s=STALE_HEARTBEATS * heartbeat_s,
        max_attempts=max_attempts,
    )
    sends = [
        Send(Task.PROPOSE, trial.id)
        if trial.status is TrialStatus.PROPOSED
        else Send(Task.RUN, trial.id, spec.budgets.trial.queue)
        for trial in unclaimed(
            session, search_id, now=now, resend_after_s=RESEND_HEARTBEATS * heartbeat_s
        )
    ]
    if search.status is not SearchStatus.RUNNING:
        session.flush()
        return sends
    decision = plan(_state(session, search, spec, now))
    for trial_id in decision.dispatch:
        dispatched = cas(
            session,
            trial_id,
            (TrialStatus.READY,),
            status=TrialStatus.QUEUED,
            queued_at=now,
            sent_at=now,
        )
        if dispatched:
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
    rollup.advance(session, search)
    session.flush()
    return sends


def _state(session: Session, search: Search, spec: SearchSpec, now: datetime) -> SearchState:
    """The counts `plan` decides from. Every tick asks, so none of them rescans the search:
    counts come from the stored blocks of settled trials plus the live tail (`tallies`), the
    rest from index lookups bounded by what they look for."""
    counted = tallies(session, search)
    by_status: dict[str, int] = {}
    agent_counts: dict[str, int] = {}
    for tally in counted:
        by_status[tally.status] = by_status.get(tally.status, 0) + tally.count
        if tally.agent != BASELINE_AGENT:
            agent_counts[tally.agent] = agent_counts.get(tally.agent, 0) + tally.count
    keepers = len({t.agent for t in counted if t.keeps and t.agent != BASELINE_AGENT})
    cost = sum(tally.cost_usd for tally in counted)
    ready = list(
        session.scalars(
            select(Trial.id)
            .where(Trial.search_id == search.id, Trial.status == TrialStatus.READY)
            .order_by(Trial.id)
        )
    )
    baseline = session.execute(
        select(Trial.status, Trial.label, Trial.label_reason).where(
            Trial.search_id == search.id, Trial.number == 0
        )
    ).one()
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
    since_best, enough = 0, spec.budgets.search.stagnation_trials
    if enough is not None:  # counted only as far as the rule looks: a stale search is long
        later = (
            select(Trial.id)
            .where(
                Trial.search_id == search.id,
                Trial.number > best_number,
                Trial.status == TrialStatus.FINISHED,
                or_(Trial.label != Label.INFRA_ERROR, Trial.commit_sha.is_not(None)),
            )
            .limit(enough)
        )
        since_best = session.scalar(select(func.count()).select_from(later.subquery())) or 0
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
            combinable=(keepers or 0) >= 2,
            resting=_resting(session, search, now),
        ),
        agent_counts=agent_counts,
        baseline_reason=(baseline.label_reason or "")[:BASELINE_REASON_CHARS],
        proposal_s=_typical_proposal_s(session, search.id),
        trial_s=_typical_trial_s(session, search.id),
    )


TIMED = 20  # latest proposals and trials whose times size the proposal pipeline
LOOKED_AT = 200  # latest rows read to find them: never a scan of a long search


def _typical_proposal_s(session: Session, search_id: int) -> float | None:
    """Median time from a proposal's row to its recording, over the latest proposals (waiting
    for a proposal worker included: that is what a slot would wait on)."""
    latest = (
        select(Event.trial_id, Event.kind, Event.created_at)
        .where(Event.search_id == search_id)
        .order_by(Event.id.desc())
        .limit(LOOKED_AT)
        .subquery()
    )
    rows = session.execute(
        select(latest.c.created_at, Trial.created_at)
        .join(Trial, Trial.id == latest.c.trial_id)
        .where(latest.c.kind == events.PROPOSED)
        .limit(TIMED)
    )
    spans = [(recorded - asked).total_seconds() for recorded, asked in rows]
    return statistics.median(spans) if spans else None


def _typical_trial_s(session: Session, search_id: int) -> float | None:
    """Median time the latest finished trials held their slots (those that ran at all)."""
    rows = session.execute(
        select(Trial.started_at, Trial.finished_at)
        .where(Trial.search_id == search_id, Trial.status == TrialStatus.FINISHED)
        .order_by(Trial.number.desc())
        .limit(LOOKED_AT)
    )
    spans = [(ended - began).total_seconds() for began, ended in rows if ended and began]
    return statistics.median(spans[:TIMED]) if spans else None


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
    candidates = kept_candidates(session, search)
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
            sent_at=now,
        )
        session.add(trial)
        session.flush()
        sends.append(Send(Task.PROPOSE, trial.id))
    return sends


def kept_candidates(session: Session, search: Search) -> list[Candidate]:
    """The best kept trials (the baseline and the keeps), best first: the parents to pick from.

    Never any scored trial: one that did not become the best was discarded,
    and a ratchet on it would build on an idea the loop rejected.
    """
    direction = search.search_spec.evaluator.direction
    rows = session.execute(
        select(Trial.id, Trial.number, Trial.score)
        .where(
            Trial.search_id == search.id,
            Trial.decision.in_(KEPT),
            Trial.score.is_not(None),
        )
        .order_by(best_first(Trial.score, direction), Trial.number)
        .limit(CANDIDATE_LIMIT)
    )
    return [Candidate(row.id, row.number, row.score) for row in rows]


def active_searches(session: Session) -> list[int]:
    """Searches the periodic sweep ticks: running ones, and paused ones (recovery only)."""
    return list(session.scalars(select(Search.id).where(Search.status.in_(TICKED))))
