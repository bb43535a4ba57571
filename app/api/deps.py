"""Request-scoped dependencies: settings, the one session per request, the write guard."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.errors import Unauthorized


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """The only place a request's transaction commits (or rolls back, on any error)."""
    with session_scope(settings.resolved_database_url) as session:
        yield session


# scope="function": commit before the response is sent, so a 2xx means the write is durable.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def require_token(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Writes need `Authorization: Bearer <token>` when TRIALFORGE_API_TOKEN is set."""
    if settings.api_token is None:
        return
    scheme, _, supplied = (authorization or "").partition(" ")
    expected = settings.api_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Unauthorized("writes need the header `Authorization: Bearer <TRIALFORGE_API_TOKEN>`")


WriteGuard = Depends(require_token)
