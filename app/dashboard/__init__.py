"""The web dashboard: server-rendered pages for auditing what the agents did.

Pages are Jinja templates over the same services the REST API uses; charts
are SVG drawn on the server (`charts`), so every page is complete without
JavaScript and makes no request outside this server. Every page also serves
the context it renders as JSON (`?format=json`). A small script adds
live updates (server-sent events) while a search runs. Writes (pause,
resume, cancel, re-run) are HTML forms that carry the API token when
`TRIALFORGE_API_TOKEN` is set, and redirect back (POST, redirect, GET).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from app.api.deps import (
    SESSION_COOKIE,
    ReadGuard,
    SessionDep,
    SettingsDep,
    session_value,
    signed_in,
    token_matches,
)
from app.config import Settings
from app.dashboard import charts, palette, views
from app.dashboard.context import as_data
from app.db import session_scope
from app.domain import importance
from app.domain.knobs import declared
from app.domain.states import Label, SearchAction, SearchStatus, TrialStatus, next_search_status
from app.errors import InvalidRequest, NotFound, TrialforgeError, Unauthorized
from app.services import control
from app.store import searches, trials
from app.store.pagination import DEFAULT_LIMIT
from app.store.report import halt_report
from app.store.trials import TrialFilter, TrialSort

E = TypeVar("E", bound=StrEnum)
HERE = Path(__file__).parent
LIVE_POLL_S = 1.0  # how often the event stream looks for progress
COMPARE_MAX = 20  # searches on one /compare page: each costs a report and a chart
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["label_css"] = Markup(palette.badge_css())  # one rule per Label
templates.env.filters["metric"] = views.metric_text
router = APIRouter(include_in_schema=False)
sign_in = APIRouter(include_in_schema=False)  # open on a private server, as /static is


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router, dependencies=[ReadGuard])
    app.include_router(sign_in)


COMPARE_PICKER = 50  # newest searches offered to pick from on /compare


class Against(StrEnum):
    PARENT = "parent"
    BASELINE = "baseline"


ERROR_TITLES = {
    "NotFound": "Not found",
    "Conflict": "Not possible now",
    "InvalidRequest": "Bad request",
    "InvalidSpec": "The search spec cannot be used",
    "Unauthorized": "The API token is needed",
    "SchemaOutdated": "The database needs an upgrade",
}


def error_page(request: Request, exc: TrialforgeError) -> Response:
    """The HTML page for an error of a dashboard page (the API's errors stay JSON), titled
    in words, not by the exception's class."""
    title = ERROR_TITLES.get(type(exc).__name__, "Something went wrong")
    return templates.TemplateResponse(
        request,
        "error.html",
        {"error": title, "message": exc.message, "auth": False},
        status_code=exc.status_code,
    )


def _page(request: Request, template: str, **context: Any) -> Response:
    """The page, or with `?format=json` the context it renders, as data."""
    settings: Settings = request.app.state.settings
    # A private server's pages are seen only signed in, and a sign-in is enough to act.
    asks = settings.api_token is not None and not settings.private
    context = {"auth": asks, "private": settings.private, **context}
    if request.query_params.get("format") == "json":
        return JSONResponse(as_data(context))
    return templates.TemplateResponse(request, template, context)


def _check_token(request: Request, settings: Settings, token: str | None) -> None:
    """A write from a page: the token typed into its form, or a private server's sign-in.

    The sign-in cookie is SameSite=Strict, so another site cannot post with it.
    """
    if settings.api_token is None or signed_in(request, settings):
        return
    if not token_matches(settings, token or ""):
        raise Unauthorized("this action needs the API token (TRIALFORGE_API_TOKEN)")


@router.get("/", response_class=HTMLResponse)
def searches_page(request: Request, session: SessionDep, cursor: str | None = None) -> Response:
    page = searches.list_searches(session, limit=DEFAULT_LIMIT, cursor=cursor, status=None)
    stats = searches.search_stats(session, [search.id for search in page.items])
    rows = []
    for search in page.items:
        stat, spec = stats[search.id], search.search_spec
        gpus = spec.budgets.trial.gpus
        improvement = None
        if stat.best_score is not None and stat.baseline_score is not None:
            improvement = spec.evaluator.direction.gain(stat.best_score, stat.baseline_score)
        rows.append({"search": search, "stats": stat, "improvement": improvement,
                     "gpu_seconds": stat.wallclock_s * gpus})  # fmt: skip
    return _page(request, "searches.html", rows=rows, next_cursor=page.next_cursor)


@router.get("/searches/{search_id}", response_class=HTMLResponse)
def search_page(search_id: int, request: Request, session: SessionDep) -> Response:
    search = searches.get_search(session, search_id)
    view = views.search_view(session, search)
    stats = searches.search_stats(session, [search_id])[search_id]
    colours = palette.agent_colours(view.agents)
    direction = view.spec.evaluator.direction
    return _page(
        request,
        "search.html",
        view=view,
        stats=stats,
        colours=colours,
        progress=charts.progress_chart(
            view.buckets, direction=direction, colours=colours, last_number=view.last_number
        ),
        failures=charts.failure_strips(
            view.buckets, agents=["baseline", *view.agents], last_number=view.last_number
        ),
        lineage=charts.lineage_graph(view.nodes, view.best_path, colours),
        label_colours=palette.LABEL_COLOURS,
        actions=[a for a in SearchAction if _allowed(search.status, a)],
        report=halt_report(session, search_id, stats),
    )


def _choice(enum: type[E], value: str | None) -> E | None:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError as error:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidRequest(f"{value!r} is not one of: {allowed}") from error


def _allowed(status: str, action: SearchAction) -> bool:
    return next_search_status(SearchStatus(status), action) is not None


@router.get("/compare", response_class=HTMLResponse)
def compare_searches(
    request: Request, session: SessionDep, ids: Annotated[list[str] | None, Query()] = None
) -> Response:
    """Searches side by side, e.g. the arms of a control study: `/compare?ids=1,2`, or
    picked on the page (`?ids=1&ids=2`); their best-so-far lines on one chart."""
    given = ",".join(ids or [])
    parts = [part for part in given.split(",") if part.strip()]
    if len(parts) > COMPARE_MAX:
        raise InvalidRequest(f"compare at most {COMPARE_MAX} searches at once, not {len(parts)}")
    try:
        wanted = [int(part) for part in parts]
    except ValueError as error:
        raise InvalidRequest(
            f"ids must be search ids separated by commas, not {given!r}"
        ) from error
    columns, lines = [], []
    for index, search_id in enumerate(wanted):
        search = searches.get_search(session, search_id)
        view = views.search_view(session, search)
        colours = palette.agent_colours(view.agents)
        columns.append(
            {
                "search": search,
                "report": halt_report(session, search_id),
                "progress": charts.progress_chart(
                    view.buckets,
                    direction=view.spec.evaluator.direction,
                    colours=colours,
                    last_number=view.last_number,
                ),
            }
        )
        corners = charts.best_so_far(view.buckets, view.spec.evaluator.direction, view.last_number)
        colour = palette.AGENT_COLOURS[index % len(palette.AGENT_COLOURS)]
        lines.append(charts.Series(f"{search.id} · {search.name}", colour, corners))
    recent = searches.list_searches(session, limit=COMPARE_PICKER, cursor=None).items
    return _page(
        request,
        "compare_searches.html",
        columns=columns,
        chart=charts.comparison_chart(lines) if lines else None,
        recent=recent,
        picked=set(wanted),
    )


@router.get("/searches/{search_id}/params", response_class=HTMLResponse)
def params_page(
    search_id: int, request: Request, session: SessionDep, metric: str | None = None
) -> Response:
    """Where the search looked in its declared knobs' space, what each point scored, which
    knobs mattered, and any metric the evaluator reported over the trials."""
    search = searches.get_search(session, search_id)
    spec = search.search_spec
    names = [knob.name for knob in declared(spec.agents)]
    points = views.param_points(session, search)
    direction = spec.evaluator.direction
    found = views.reported(session, search)
    shown = metric or (found.names[0] if found.names else spec.evaluator.metric)
    if metric and metric not in found.names:
        reported_names = ", ".join(found.names) or "none yet"
        raise InvalidRequest(f"no finished trial reported {metric!r}; reported: {reported_names}")
    shares = importance.importances([(p.params, p.score) for p in points], names, direction)
    return _page(
        request,
        "params.html",
        search=search,
        names=names,
        count=len(points),
        parallel=charts.parallel_coordinates(points, names, direction),
        scatters=[(name, charts.param_scatter(points, name)) for name in names],
        importances=shares,
        importance_chart=charts.importance_chart(shares) if shares else None,
        min_trials=importance.MIN_TRIALS,
        metrics=found.names,
        metric=shown,
        metric_chart=charts.metric_chart(
            found.points.get(shown, []), shown, palette.agent_colours([a.name for a in spec.agents])
        ),
    )


@router.get("/searches/{search_id}/trials", response_class=HTMLResponse)
def trials_page(
    search_id: int,
    request: Request,
    session: SessionDep,
    agent: str | None = None,
    label: str | None = None,
    status: str | None = None,
    sort: TrialSort = TrialSort.NEWEST,
    cursor: str | None = None,
    before: str | None = None,
) -> Response:
    """The filter form sends every field; an empty one means "any"."""
    search = searches.get_search(session, search_id)
    where = TrialFilter(
        agent=agent or None, label=_choice(Label, label), status=_choice(TrialStatus, status)
    )
    page = trials.list_trials(
        session, search, where=where, sort=sort, limit=DEFAULT_LIMIT, cursor=cursor,
        before=None if cursor else before,
    )  # fmt: skip
    return _page(
        request,
        "trials.html",
        search=search,
        page=page,
        parents=views.numbers_of(session, [t.parent_id for t in page.items if t.parent_id]),
        first_page=page.prev_cursor is not None,
        live=search.status == SearchStatus.RUNNING,
        knobs=[knob.name for knob in declared(search.search_spec.agents)],
        where=where,
        sort=sort,
        agents=[a.name for a in search.agents],
        labels=list(Label),
        statuses=list(TrialStatus),
        sorts=list(TrialSort),
    )


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(trial_id: int, request: Request, session: SessionDep) -> Response:
    view = views.trial_view(session, trials.get_trial(session, trial_id))
    return _page(request, "trial.html", view=view, diff=views.diff_lines(view.trial.diff))


@router.get("/trials/{trial_id}/compare", response_class=HTMLResponse)
def compare_page(
    trial_id: int, request: Request, session: SessionDep, against: Against = Against.PARENT
) -> Response:
    """The trial beside its parent (the diff it made), or beside the baseline (every edit of
    its line, cumulated: what the best recipe changed in all)."""
    view = views.trial_view(session, trials.get_trial(session, trial_id))
    if against is Against.BASELINE:
        view, diff = views.from_baseline(session, view)
    else:
        diff = view.trial.diff
    if view.parent is None:
        raise NotFound(f"trial {trial_id} has no parent to compare with")
    keys = sorted(set(view.metrics) | set(view.parent.metrics or {}))
    return _page(
        request, "compare.html", view=view, keys=keys, diff=views.diff_lines(diff),
        against=against.value,
    )  # fmt: skip


@router.post("/searches/{search_id}/{action}")
def act(
    search_id: int,
    action: SearchAction,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Form()] = None,
    confirm: Annotated[str | None, Form()] = None,
) -> Response:
    """Pause and resume at once; cancel, which cannot be undone, after a page that asks."""
    _check_token(request, settings, token)
    if action is SearchAction.CANCEL and confirm != "yes":
        search = searches.get_search(session, search_id)
        stats = searches.search_stats(session, [search_id])[search_id]
        unfinished = stats.trials_total - stats.trials_finished
        return _page(request, "confirm.html", search=search, unfinished=unfinished)
    control.apply_action(session, search_id, action, actor="dashboard")
    return RedirectResponse(f"/searches/{search_id}", status_code=303)


@router.post("/trials/{trial_id}/rerun")
def rerun(
    trial_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    _check_token(request, settings, token)
    copy = control.rerun_trial(session, trial_id, actor="dashboard")
    session.flush()
    return RedirectResponse(f"/trials/{copy.id}", status_code=303)


@sign_in.get("/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep, next: str = "/") -> Response:
    if not settings.private:
        return RedirectResponse(_local(next), status_code=303)  # nothing to sign in to
    return templates.TemplateResponse(
        request, "login.html", {"next": _local(next), "auth": False, "failed": False}
    )


@sign_in.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Sign a browser in on a private server: a cookie derived from the token, not the token."""
    if not settings.private:
        return RedirectResponse(_local(next), status_code=303)
    if not token_matches(settings, token):
        context = {"next": _local(next), "auth": False, "failed": True}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(settings),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@sign_in.post("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _local(target: str) -> str:
    """Only a path on this server: a sign-in must not redirect elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/searches/{search_id}/live")
async def live(search_id: int, request: Request, settings: SettingsDep) -> StreamingResponse:
    """Server-sent events: a `progress` event whenever the search's counts change."""
    url = settings.resolved_database_url

    def snapshot() -> dict[str, Any]:
        with session_scope(url) as session:
            search = searches.get_search(session, search_id)
            stats = searches.search_stats(session, [search_id])[search_id]
            return {
                "status": search.status,
                "finished": stats.trials_finished,
                "total": stats.trials_total,
                "best": stats.best_score,
            }

    first = await asyncio.to_thread(snapshot)  # a missing search is a 404 before streaming

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        current = first
        while not await request.is_disconnected():
            if current != last:
                yield f"event: progress\ndata: {json.dumps(current)}\n\n"
                last = current
            if current["status"] not in (SearchStatus.RUNNING, SearchStatus.PAUSED):
                return
            await asyncio.sleep(LIVE_POLL_S)
            current = await asyncio.to_thread(snapshot)

    return StreamingResponse(stream(), media_type="text/event-stream")
