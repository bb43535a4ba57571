"""Controlling a search: pause, resume, cancel, and re-run a trial.

State changes are compare-and-set updates: two clients pressing pause and
cancel at once cannot both win, and an illegal move is a Conflict naming the
current status. Running trials of a cancelled search are marked here; their
workers see it at the next heartbeat and kill the run.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.states import (
    SEARCH_TRANSITIONS,
    UNFINISHED,
    SearchAction,
    SearchStatus,
    TrialStatus,
)
from app.errors import Conflict, NotFound
from app.gitstore import GitStore
from app.store import events
from app.store.models import Search, Trial, utcnow
from app.store.searches import get_search

TERMINAL = frozenset({SearchStatus.CANCELLED, SearchStatus.FINISHED})
ACTIVE = (SearchStatus.RUNNING, SearchStatus.PAUSED)


def apply_action(session: Session, search_id: int, action: SearchAction, *, actor: str) -> Search:
    """Move a search by compare-and-set; an illegal move is a Conflict naming the current status."""
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


def rerun_trial(session: Session, trial_id: int, *, actor: str) -> Trial:
    """Queue the same commit again as a new trial (to check a result against noise).

    Only a search that can still run takes it; the copy keeps the original's
    parent and agent, so it sits beside it in the lineage.
    """
    original = session.get(Trial, trial_id)
    if original is None:
        raise NotFound(f"no trial {trial_id}")
    if original.commit_sha is None or original.status != TrialStatus.FINISHED:
        raise Conflict(f"trial {trial_id} has no finished run to repeat")
    locked = session.execute(
        update(Search)
        .where(Search.id == original.search_id, Search.status.in_(ACTIVE))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]
        status = get_search(session, original.search_id).status
        raise Conflict(f"cannot re-run a trial of a search that is {status}")
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
