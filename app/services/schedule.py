"""Ticking searches: one unit of work per tick, whose sends leave only after it commits."""

from __future__ import annotations

from app.config import Settings
from app.db import session_scope
from app.store import tick as ticks
from app.store.tick import Send


def tick(settings: Settings, search_id: int) -> list[Send]:
    """Tick the search; what to enqueue, decided by a transaction that has committed."""
    with session_scope(settings.resolved_database_url) as session:
        return ticks.tick(
            session,
            search_id,
            heartbeat_s=settings.heartbeat_s,
            max_attempts=settings.max_attempts,
        )


def running_searches(settings: Settings) -> list[int]:
    with session_scope(settings.resolved_database_url) as session:
        return ticks.active_searches(session)
