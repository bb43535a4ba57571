"""Trial reads: filtered, sorted pages, one trial with its diff, the lineage tree, the export.

Sorting by score is direction-aware ("best" means highest for a maximised
metric, lowest for a minimised one) and puts unscored trials (failures) last,
so the top of the list is always the best measured result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from app.domain.fields import NAME_PATTERN
from app.domain.states import Label, TrialStatus
from app.errors import NotFound
from app.store.models import Agent, Event, Search, Trial
from app.store.ordering import best_first, worst_first
from app.store.pagination import (
    Page,
    decode_id_cursor,
    decode_score_cursor,
    encode_cursor,
    is_row_id,
)

EXPORT_BATCH = 500


class TrialSort(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    BEST = "best"
    WORST = "worst"


@dataclass(frozen=True)
class TrialFilter:
    agent: str | None = None
    label: Label | None = None
    status: TrialStatus | None = None


def _filtered(search_id: int, where: TrialFilter) -> Select[Trial]:
    query = select(Trial).where(Trial.search_id == search_id)
    if where.agent is not None and not re.fullmatch(NAME_PATTERN, where.agent):
        return query.where(false())  # no agent is named so (nor may text with NUL reach SQL)
    if where.agent is not None:
        query = query.join(Agent, Trial.agent_id == Agent.id).where(Agent.name == where.agent)
    if where.label is not None:
        query = query.where(Trial.label == where.label)
    if where.status is not None:
        query = query.where(Trial.status == where.status)
    return query


def _score_after(descending: bool, score: float | None, trial_id: int) -> ColumnElement[bool]:
    """Rows that come after (score, id) in `score <dir> NULLS LAST, id ASC` order."""
    if score is None:
        return and_(Trial.score.is_(None), Trial.id > trial_id)
    beyond = Trial.score < score if descending else Trial.score > score
    return or_(beyond, and_(Trial.score == score, Trial.id > trial_id), Trial.score.is_(None))


def _score_before(descending: bool, score: float | None, trial_id: int) -> ColumnElement[bool]:
    """Rows that come before (score, id) in the same order: `_score_after`'s mirror."""
    if score is None:
        return or_(Trial.score.is_not(None), Trial.id < trial_id)
    ahead = Trial.score > score if descending else Trial.score < score
    return or_(ahead, and_(Trial.score == score, Trial.id < trial_id))


def list_trials(
    session: Session,
    search: Search,
    *,
    where: TrialFilter,
    sort: TrialSort,
    limit: int,
    cursor: str | None,
    before: str | None = None,
) -> Page[Trial]:
    """One page in `sort` order: the first, the one after `cursor`, or the one before `before`
    (read backwards from it, then turned round, so it is the same page a reader left)."""
    query = _filtered(search.id, where)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    back = before is not None
    by_id = sort in (TrialSort.NEWEST, TrialSort.OLDEST)
    mark = before if back else cursor
    if by_id:
        newest = sort is TrialSort.NEWEST
        if mark is not None:
            last_id = decode_id_cursor(mark)
            query = query.where(Trial.id < last_id if newest != back else Trial.id > last_id)
        query = query.order_by(Trial.id.desc() if newest != back else Trial.id.asc())
    else:
        direction = search.search_spec.evaluator.direction
        descending = direction.higher_is_better == (sort is TrialSort.BEST)
        if mark is not None:
            last_score, last_id = decode_score_cursor(mark)
            side = _score_before if back else _score_after
            query = query.where(side(descending, last_score, last_id))
        if back:  # the same order reversed: unscored rows first, ids descending
            first = Trial.score.asc() if descending else Trial.score.desc()
            query = query.order_by(first.nulls_first(), Trial.id.desc())
        else:
            order = best_first if sort is TrialSort.BEST else worst_first
            query = query.order_by(order(Trial.score, direction), Trial.id.asc())

    rows = list(session.scalars(query.options(joinedload(Trial.agent)).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if back:
        rows.reverse()

    def key(trial: Trial) -> str:
        return encode_cursor([trial.id] if by_id else [trial.score, trial.id])

    # Going back, a page after this one exists (the one left); going on, one before it does.
    later = (back or more) and rows
    earlier = (more if back else mark is not None) and rows
    return Page(
        items=rows,
        next_cursor=key(rows[-1]) if later else None,
        total=total,
        prev_cursor=key(rows[0]) if earlier else None,
    )


def get_trial(session: Session, trial_id: int) -> Trial:
    """The trial, or NotFound (an id no row can have included)."""
    trial = (
        session.get(Trial, trial_id, options=[joinedload(Trial.agent)])
        if is_row_id(trial_id)
        else None
    )
    if trial is None:
        raise NotFound(f"no trial {trial_id}")
    return trial


def ancestry(session: Session, trial_id: int, limit: int | None = None) -> list[int]:
    """Trial ids from the root (the baseline) down to `trial_id`, in one recursive query.

    With `limit`, only the last `limit` of them (the walk stops there).
    """
    chain = select(Trial.id, Trial.parent_id, literal(0).label("depth")).where(Trial.id == trial_id)
    chain_cte = chain.cte("chain", recursive=True)
    parent = aliased(Trial)
    step = select(parent.id, parent.parent_id, chain_cte.c.depth + 1).join(
        chain_cte, parent.id == chain_cte.c.parent_id
    )
    if limit is not None:
        step = step.where(chain_cte.c.depth < limit - 1)
    chain_cte = chain_cte.union_all(step)
    rows = session.execute(select(chain_cte.c.id).order_by(chain_cte.c.depth.desc()))
    return [row.id for row in rows]


def lineage_page(
    session: Session, search: Search, *, limit: int, cursor: str | None
) -> Page[Trial]:
    """Nodes in creation order; a parent always comes before its children."""
    query = select(Trial).where(Trial.search_id == search.id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if cursor is not None:
        query = query.where(Trial.id > decode_id_cursor(cursor))
    rows = list(
        session.scalars(query.options(joinedload(Trial.agent)).order_by(Trial.id).limit(limit + 1))
    )
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=next_cursor, total=total)


def iter_trials(session: Session, search_id: int) -> Iterator[Trial]:
    """Every trial of a search in creation order, fetched in batches (never loaded whole)."""
    query = (
        select(Trial)
        .where(Trial.search_id == search_id)
        .options(joinedload(Trial.agent))
        .order_by(Trial.id)
        .execution_options(yield_per=EXPORT_BATCH)
    )
    yield from session.scalars(query)


def iter_events(session: Session, search_id: int) -> Iterator[Event]:
    query = (
        select(Event)
        .where(Event.search_id == search_id)
        .order_by(Event.id)
        .execution_options(yield_per=EXPORT_BATCH)
    )
    yield from session.scalars(query)
