"""Controlling a search: pause, resume, cancel, change its budgets, and re-run a trial.

State changes are compare-and-set updates: two clients pressing pause and
cancel at once cannot both win, and an illegal move is a Conflict naming the
current status. Running trials of a cancelled search are marked here; their
workers see it at the next heartbeat and kill the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.domain.spec import parse_spec
from app.domain.states import (
    ACTIVE,
    SEARCH_TRANSITIONS,
    UNFINISHED,
    Label,
    SearchAction,
    SearchStatus,
    TrialStatus,
    can_rerun,
)
from app.errors import Conflict, InvalidSpec, NotFound
from app.gitstore import GitStore
from app.store import events
from app.store.models import Search, Trial, TrialRollup, utcnow
from app.store.pagination import is_row_id
from app.store.searches import get_search
from app.store.trials import get_trial

TERMINAL = frozenset({SearchStatus.CANCELLED, SearchStatus.FINISHED})


def apply_action(session: Session, search_id: int, action: SearchAction, *, actor: str) -> Search:
    """Move a search by compare-and-set; an illegal move is a Conflict naming the current status."""
    if not is_row_id(search_id):  # before SQL, where it would overflow instead of matching
        raise NotFound(f"no search {search_id}")
    sources, target = SEARCH_TRANSITIONS[action]
    now = utcnow()
    values: dict[str, object] = {"status": target, "updated_at": now}
    if target in TERMINAL:
        values["finished_at"] = now
    moved = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.status.in_(sources))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        current = get_search(session, search_id).status
        raise Conflict(
            f"cannot {action} a search that is {current}",
            detail={"action": action, "status": current},
        )
    if action is SearchAction.RESUME:
        _reopen(session, search_id, actor)
    if target is SearchStatus.CANCELLED:
        session.execute(
            update(Trial)
            # Running trials too: their workers see it at the next heartbeat and kill the run.
            .where(Trial.search_id == search_id, Trial.status.in_(UNFINISHED))
            .values(status=TrialStatus.CANCELLED, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    events.record(session, search_id=search_id, kind=f"search.{action}", actor=actor)
    session.flush()
    search = session.get(Search, search_id, populate_existing=True)
    assert search is not None  # the CAS above just matched it
    return search


def _reopen(session: Session, search_id: int, actor: str) -> None:
    """A resumed search runs again from where it stopped; a failed baseline runs again.

    The failed baseline's outcome is kept in a `trial.retried` event, so the
    record of why the search once stopped is not lost.
    """
    session.execute(
        update(Search)
        .where(Search.id == search_id)
        .values(halt_reason=None, finished_at=None)
        .execution_options(synchronize_session=False)
    )
    baseline = session.scalar(
        select(Trial).where(
            Trial.search_id == search_id,
            Trial.number == 0,
            Trial.status == TrialStatus.FINISHED,
            Trial.label != Label.OK,
        )
    )
    if baseline is None:
        return
    events.record(
        session,
        search_id=search_id,
        trial_id=baseline.id,
        kind="trial.retried",
        actor=actor,
        data={
            "label": baseline.label,
            "reason": baseline.label_reason,
            "metrics": baseline.metrics,
        },  # fmt: skip
    )
    baseline.status, baseline.label, baseline.label_reason = TrialStatus.READY, None, None
    baseline.score, baseline.decision, baseline.attempts = None, None, 0
    baseline.worker, baseline.finished_at, baseline.metrics = None, None, {}
    # Stored sums counted it as settled: they are dropped, and the tick sums them again.
    session.execute(delete(TrialRollup).where(TrialRollup.search_id == search_id))
    session.execute(update(Search).where(Search.id == search_id).values(rollup_blocks=0))


def set_budgets(session: Session, search_id: int, budgets: dict[str, Any], *, actor: str) -> Search:
    """Change a search's budgets (`{"trial": {...}, "search": {...}}`, merged into the
    current ones); 422 naming the field for a bad value, 409 for a cancelled search.

    With a resume after it, this is how a search whose baseline overran its
    budget, or that reached `max_trials`, goes on.
    """
    search = get_search(session, search_id)
    if search.status is SearchStatus.CANCELLED:
        raise Conflict(f"cannot change the budgets of a search that is {search.status}")
    current = search.spec.get("budgets", {})
    unknown = sorted(set(budgets) - {"trial", "search"})
    if unknown:
        detail = [{"field": f"budgets.{key}", "message": "not a budget"} for key in unknown]
        raise InvalidSpec(f"invalid budgets: {', '.join(unknown)} are not budgets", detail=detail)
    merged = {
        part: {**current.get(part, {}), **(budgets.get(part) or {})} for part in ("trial", "search")
    }
    spec = parse_spec({**search.spec, "budgets": merged})
    search.spec = spec.model_dump(mode="json")
    events.record(
        session,
        search_id=search_id,
        kind="search.budgets",
        actor=actor,
        data={"before": current, "after": search.spec["budgets"]},
    )
    session.flush()
    return search


def rerun_trial(session: Session, trial_id: int, *, actor: str) -> Trial:
    """Queue the same commit again as a new trial (to check a result against noise).

    Only a search that can still run takes it; the copy keeps the original's
    parent and agent, so it sits beside it in the lineage.
    """
    original = get_trial(session, trial_id)
    search_status = get_search(session, original.search_id).status
    refusal = can_rerun(
        original.status, original.label, original.commit_sha is not None, search_status
    )
    if refusal is not None or original.commit_sha is None:
        raise Conflict(f"cannot re-run trial {trial_id}: {refusal}")
    locked = session.execute(
        update(Search)
        .where(Search.id == original.search_id, Search.status.in_(ACTIVE))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]  # it moved meanwhile
        status = get_search(session, original.search_id).status
        raise Conflict(f"cannot re-run trial {trial_id}: its search is {status}")
    number = session.scalar(
        select(func.max(Trial.number)).where(Trial.search_id == original.search_id)
    )
    copy = Trial(
        search_id=original.search_id,
        number=(number or 0) + 1,
        parent_id=original.parent_id,
        agent_id=original.agent_id,
        hypothesis=f"re-run of trial {original.number}: {original.hypothesis}",
        diff=original.diff,
        commit_sha=original.commit_sha,
        edit_hash=original.edit_hash,
        status=TrialStatus.READY,
        image=original.image,
    )
    session.add(copy)
    session.flush()
    search = get_search(session, original.search_id)
    GitStore(Path(search.repo_path)).create_ref(f"refs/trials/{copy.id}", original.commit_sha)
    events.record(
        session,
        search_id=search.id,
        trial_id=copy.id,
        kind="trial.rerun",
        actor=actor,
        data={"of": original.id},
    )
    return copy
