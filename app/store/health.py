"""The facts behind a search's warnings (`app.domain.health`), in a few bounded queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from app.domain.health import Outcome, Pipeline, Waiting, warnings
from app.domain.spec import PROPOSE_QUEUE
from app.domain.states import SearchStatus, TrialStatus
from app.store.clock import db_now
from app.store.models import Search, Trial

RECENT = 200  # latest finished trials read for the agents' streaks


def search_warnings(session: Session, search: Search) -> list[str]:
    """What keeps this search from progressing, with what to do; empty when nothing does.
    Only a running search waits on workers; any search can have a failing agent."""
    names = {agent.id: agent.name for agent in search.agents}
    latest: dict[str, list[Outcome]] = {}
    rows = session.execute(
        select(Trial.agent_id, Trial.label, Trial.label_reason)
        .where(
            Trial.search_id == search.id,
            Trial.status == TrialStatus.FINISHED,
            Trial.agent_id.is_not(None),
        )
        .order_by(Trial.number.desc())
        .limit(RECENT)
    )
    for agent_id, label, reason in rows:
        latest.setdefault(names.get(agent_id or 0, "?"), []).append(Outcome(label, reason or ""))
    if search.status != SearchStatus.RUNNING:
        return warnings(latest, Pipeline())
    spec, now = search.search_spec, db_now(session)
    trial_queue = spec.budgets.trial.queue

    def waiting(
        queue: str, since: ColumnElement[Any] | QueryableAttribute[Any], *where: ColumnElement[bool]
    ) -> Waiting | None:
        count, oldest = session.execute(
            select(func.count(), func.min(since)).where(Trial.search_id == search.id, *where)
        ).one()
        # The aggregates keep the column's type: tz-aware datetimes on every backend.
        return Waiting(int(count), (now - oldest).total_seconds(), queue) if count else None

    running = (
        session.scalar(
            select(func.count()).where(
                Trial.search_id == search.id, Trial.status == TrialStatus.RUNNING
            )
        )
        or 0
    )
    queued = waiting(trial_queue, Trial.queued_at, Trial.status == TrialStatus.QUEUED)
    ready = waiting(
        trial_queue,
        func.coalesce(Trial.heartbeat_at, Trial.sent_at, Trial.created_at),
        Trial.status == TrialStatus.READY,
    )
    proposals = waiting(
        PROPOSE_QUEUE,
        func.coalesce(Trial.sent_at, Trial.created_at),
        Trial.status == TrialStatus.PROPOSED,
        Trial.worker.is_(None),
    )
    busy = running + (queued.count if queued else 0)
    pipeline = Pipeline(
        ready, queued, proposals, running, spec.budgets.search.max_concurrent - busy
    )
    return warnings(latest, pipeline)
