"""Search endpoints: parse input, call one service, shape the output."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import StreamingResponse

from app.api.deps import SessionDep, SettingsDep, WriteGuard
from app.api.export import export_lines
from app.api.schemas import (
    ERROR_RESPONSES,
    LineageEdge,
    LineageNode,
    LineageOut,
    PageOut,
    ReportOut,
    SearchCreatedOut,
    SearchOut,
    TrialSummaryOut,
)
from app.domain.spec import SearchSpec
from app.domain.states import Label, SearchAction, SearchStatus, TrialStatus
from app.errors import InvalidRequest
from app.services import control, import_recipe
from app.store import searches, trials
from app.store.health import search_warnings
from app.store.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.store.report import halt_report
from app.store.trials import TrialFilter, TrialSort

router = APIRouter(prefix="/api/searches", tags=["searches"], responses=ERROR_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


def _out(session: SessionDep, search_id: int) -> SearchOut:
    search = searches.get_search(session, search_id)
    stats = searches.search_stats(session, [search.id])[search.id]
    return SearchOut.build(search, stats, search_warnings(session, search))


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[WriteGuard])
def create_search(spec: SearchSpec, session: SessionDep, settings: SettingsDep) -> SearchCreatedOut:
    """Import the recipe, check the spec against it and the server, record the roster and
    the baseline trial, and start the search; the body lists what was checked."""
    created = import_recipe.create_search(session, spec, settings=settings, actor="api")
    checks = [{"field": check.field, "message": check.message} for check in created.checks]
    return SearchCreatedOut.model_validate(
        {**_out(session, created.search.id).model_dump(), "checks": checks}
    )


@router.get("")
def list_searches(
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: SearchStatus | None = None,
) -> PageOut[SearchOut]:
    page = searches.list_searches(session, limit=limit, cursor=cursor, status=status)
    stats = searches.search_stats(session, [search.id for search in page.items])
    return PageOut(
        items=[SearchOut.build(search, stats[search.id]) for search in page.items],
        next_cursor=page.next_cursor,
        total=page.total,
    )


@router.get("/{search_id}")
def get_search(search_id: int, session: SessionDep) -> SearchOut:
    return _out(session, search_id)


@router.post("/{search_id}/{action}", dependencies=[WriteGuard])
def act_on_search(search_id: int, action: SearchAction, session: SessionDep) -> SearchOut:
    """Pause, resume or cancel; an illegal move for the current status is a 409."""
    control.apply_action(session, search_id, action, actor="api")
    return _out(session, search_id)


@router.patch("/{search_id}/budgets", dependencies=[WriteGuard])
def set_budgets(
    search_id: int,
    budgets: Annotated[dict[str, Any], Body(examples=[{"trial": {"wallclock_s": "10m"}}])],
    session: SessionDep,
) -> SearchOut:
    """Change budgets (merged into the current ones), e.g. before resuming a search whose
    baseline overran its wall-clock; 422 names a bad field, 409 for a cancelled search."""
    control.set_budgets(session, search_id, budgets, actor="api")
    return _out(session, search_id)


@router.get("/{search_id}/report")
def report(search_id: int, session: SessionDep) -> ReportOut:
    """The halt report: why it stopped, best against baseline, keeps, labels, cost per point."""
    return ReportOut.model_validate(vars(halt_report(session, search_id)))


@router.get("/{search_id}/trials")
def list_trials(
    search_id: int,
    session: SessionDep,
    agent: str | None = None,
    label: Label | None = None,
    status: TrialStatus | None = None,
    sort: TrialSort = TrialSort.NEWEST,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    before: Annotated[
        str | None, Query(description="`prev_cursor` of a page: the page before it.")
    ] = None,
) -> PageOut[TrialSummaryOut]:
    search = searches.get_search(session, search_id)
    if cursor is not None and before is not None:
        raise InvalidRequest("give cursor (the page after) or before (the page before), not both")
    page = trials.list_trials(
        session,
        search,
        where=TrialFilter(agent=agent, label=label, status=status),
        sort=sort,
        limit=limit,
        cursor=cursor,
        before=before,
    )
    return PageOut(
        items=[TrialSummaryOut.build(trial) for trial in page.items],
        next_cursor=page.next_cursor,
        total=page.total,
        prev_cursor=page.prev_cursor,
    )


@router.get("/{search_id}/lineage")
def lineage(
    search_id: int,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 5_000,
    cursor: Cursor = None,
) -> LineageOut:
    """The trial tree: nodes in creation order (parents first) and parent -> child edges."""
    search = searches.get_search(session, search_id)
    page = trials.lineage_page(session, search, limit=limit, cursor=cursor)
    best = search.best_trial_id
    return LineageOut(
        search_id=search.id,
        best_trial_id=best,
        best_path=trials.ancestry(session, best) if best is not None else [],
        nodes=[
            LineageNode(
                id=t.id,
                number=t.number,
                parent_id=t.parent_id,
                agent=t.agent.name if t.agent else None,
                status=t.status,
                label=t.label,
                score=t.score,
                hypothesis=t.hypothesis,
            )
            for t in page.items
        ],
        edges=[
            LineageEdge(parent=t.parent_id, child=t.id)
            for t in page.items
            if t.parent_id is not None
        ],
        next_cursor=page.next_cursor,
        total=page.total,
    )


@router.get("/{search_id}/export", response_class=StreamingResponse)
def export(search_id: int, session: SessionDep, settings: SettingsDep) -> StreamingResponse:
    """The whole trajectory as JSONL: one `search` record, then every `trial`, then every `event`.

    Streamed from its own session in batches, so a 100k-trial search never sits in memory.
    """
    head = _out(session, search_id)
    filename = f"trialforge-search-{search_id}.jsonl"
    return StreamingResponse(
        export_lines(settings.resolved_database_url, head),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
