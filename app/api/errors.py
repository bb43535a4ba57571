"""The one place errors become HTTP responses: `{"error": <class>, "detail": ...}`.

Dashboard pages get an HTML error page instead, rendered by the renderer the
server hands `install` (the dashboard's), so the API knows no templates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.errors import SignInRequired, TrialforgeError, Unauthorized

logger = logging.getLogger(__name__)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc]
    return ".".join(parts[1:] if parts and parts[0] == "body" else parts) or "body"


def _is_page(request: Request) -> bool:
    """Dashboard pages get an HTML error page; the API and health checks get JSON."""
    path = request.url.path
    return not (path.startswith("/api/") or path == "/healthz" or path.endswith("/live"))


PageRenderer = Callable[[Request, TrialforgeError], Response]


def _trialforge_error(pages: PageRenderer | None) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TrialforgeError)
        if exc.status_code >= 500:
            logger.error("api.error path=%s error=%s", request.url.path, exc.message)
        if pages is not None and _is_page(request):
            if isinstance(exc, SignInRequired):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
            return pages(request, exc)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse(
            {"error": type(exc).__name__, "detail": exc.detail},
            status_code=exc.status_code,
            headers=headers,
        )

    return handle


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming every bad field by its dotted path (`budgets.trial.wallclock_s`)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    in_body = any(error["loc"] and error["loc"][0] == "body" for error in errors)
    return JSONResponse(
        {
            "error": "InvalidSpec" if in_body and request.method == "POST" else "InvalidRequest",
            "detail": [{"field": _field(e["loc"]), "message": e["msg"]} for e in errors],
        },
        status_code=422,
    )


def install(app: FastAPI, pages: PageRenderer | None = None) -> None:
    """`pages` renders errors of dashboard pages (every path but /api, /healthz and streams)."""
    app.add_exception_handler(TrialforgeError, _trialforge_error(pages))
    app.add_exception_handler(RequestValidationError, validation_error)
