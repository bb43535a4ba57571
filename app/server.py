"""The FastAPI application: the REST API and the dashboard on one server; OpenAPI at /docs.

/docs (Swagger UI) and /redoc come with their assets from this server
(`fastapi-offline`), so they work offline and ask nothing of a CDN; the
bearer scheme is declared, so the token is entered once with "Authorize".
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app import dashboard, db
from app.api import errors
from app.api.deps import ReadGuard, SettingsDep
from app.api.routes import searches, trials
from app.api.schemas import HealthOut
from app.config import Settings
from app.config import settings as default_settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or default_settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db.ensure_schema_current(settings.resolved_database_url)
        yield

    app = FastAPIOffline(
        title="Trialforge",
        summary="Autonomous research loop: specialist agents, sandboxed trials, owned evaluator.",
        version="0.1.0",
        lifespan=lifespan,
        static_url="/docs/assets",
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    errors.install(app, pages=dashboard.error_page)
    app.include_router(searches.router, dependencies=[ReadGuard])
    app.include_router(trials.router, dependencies=[ReadGuard])
    dashboard.install(app)

    @app.get("/healthz", tags=["health"], responses={503: {"model": HealthOut}})
    def healthz(settings: SettingsDep, response: Response) -> HealthOut:
        """For compose and load balancers: the database answers and its schema is current."""
        url = settings.resolved_database_url
        backend = make_url(url).get_backend_name()
        try:
            revision = db.current_revision(url)
        except SQLAlchemyError as exc:
            logger.warning("api.health.database_down error=%s", type(exc).__name__)
            response.status_code = 503
            return HealthOut(status="database unreachable", database=backend, schema_revision=None)
        if revision != db.head_revision():
            response.status_code = 503
            return HealthOut(status="schema outdated", database=backend, schema_revision=revision)
        return HealthOut(status="ok", database=backend, schema_revision=revision)

    return app
