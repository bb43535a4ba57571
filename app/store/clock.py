"""The database's clock: every lease, dispatch and finish time comes from it, never a worker's."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session


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
