"""Request-scoped dependencies: settings, the one session per request, the guards."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.errors import SignInRequired, Unauthorized


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


SESSION_COOKIE = "trialforge_session"


def token_matches(settings: Settings, supplied: str) -> bool:
    assert settings.api_token is not None
    return hmac.compare_digest(supplied.encode(), settings.api_token.get_secret_value().encode())


def session_value(settings: Settings) -> str:
    """What a signed-in browser's cookie holds: derived from the token, not the token."""
    assert settings.api_token is not None
    key = settings.api_token.get_secret_value().encode()
    return hmac.new(key, b"trialforge dashboard session", hashlib.sha256).hexdigest()


def signed_in(request: Request, settings: Settings) -> bool:
    """A browser signed in at /login on a private server."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    expected = session_value(settings) if settings.private else ""
    return bool(expected) and hmac.compare_digest(cookie.encode(), expected.encode())


# Declared in the OpenAPI document, so /docs asks for the token once ("Authorize").
_BEARER = HTTPBearer(auto_error=False, description="TRIALFORGE_API_TOKEN")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _bearer(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> bool:
    return credentials is not None and token_matches(settings, credentials.credentials)


def require_token(settings: SettingsDep, authorization: Bearer = None) -> None:
    """Writes need `Authorization: Bearer <token>` when TRIALFORGE_API_TOKEN is set."""
    if settings.api_token is not None and not _bearer(settings, authorization):
        raise Unauthorized("writes need the header `Authorization: Bearer <TRIALFORGE_API_TOKEN>`")


def require_reader(request: Request, settings: SettingsDep, authorization: Bearer = None) -> None:
    """On a private server, reads need the bearer token or a dashboard sign-in."""
    if not settings.private or _bearer(settings, authorization):
        return
    if not signed_in(request, settings):
        raise SignInRequired(
            "this server is private: send `Authorization: Bearer <TRIALFORGE_API_TOKEN>`, "
            "or sign in at /login"
        )


WriteGuard = Depends(require_token)
ReadGuard = Depends(require_reader)
