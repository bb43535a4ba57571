"""Trial endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from app import trials
from app.api.deps import SessionDep
from app.api.schemas import TrialOut

router = APIRouter(prefix="/api/trials", tags=["trials"])


@router.get("/{trial_id}")
def get_trial(trial_id: int, session: SessionDep) -> TrialOut:
    """One trial, whole: hypothesis, diff, commit, metrics, label and reason, log tail, cost."""
    return TrialOut.build(trials.get_trial(session, trial_id))
