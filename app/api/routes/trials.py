"""Trial endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import SessionDep, WriteGuard
from app.api.schemas import ERROR_RESPONSES, TrialOut
from app.services import control
from app.store import trials

router = APIRouter(prefix="/api/trials", tags=["trials"], responses=ERROR_RESPONSES)


@router.get("/{trial_id}")
def get_trial(trial_id: int, session: SessionDep) -> TrialOut:
    """One trial, whole: hypothesis, diff, commit, metrics, label and reason, log tail, cost."""
    return TrialOut.build(trials.get_trial(session, trial_id))


@router.post("/{trial_id}/rerun", status_code=201, dependencies=[WriteGuard])
def rerun_trial(trial_id: int, session: SessionDep) -> TrialOut:
    """Queue the same commit again as a new trial; 409 when the search can no longer run."""
    copy = control.rerun_trial(session, trial_id, actor="api")
    return TrialOut.build(trials.get_trial(session, copy.id))
