"""The append-only audit log: every state change writes one event, in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.store.models import Event

PROPOSED = "trial.proposed"  # a proposal recorded as a ready trial (its timing sizes the pipeline)


def record(
    session: Session,
    *,
    search_id: int,
    kind: str,
    actor: str,
    trial_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(search_id=search_id, trial_id=trial_id, kind=kind, actor=actor, data=data or {})
    session.add(event)
    return event
