"""Search reads: one search, a page of them, and the counts shown beside each.

Counts of settled trials come from their stored blocks (`app.store.rollup`)
plus the live tail, so a list of large searches costs a few hundred rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.domain.states import Label, SearchStatus, TrialStatus
from app.errors import NotFound
from app.store.models import Search, Trial, TrialRollup
from app.store.pagination import Page, decode_id_cursor, encode_cursor, is_row_id
from app.store.rollup import BLOCK


@dataclass(frozen=True)
class SearchStats:
    """Counts shown next to each search; computed for a whole page in one query."""

    trials_total: int = 0
    trials_finished: int = 0
    trials_ok: int = 0
    cost_usd: float = 0.0
    wallclock_s: float = 0.0  # sandbox time of every training run (all seeds, preflights)
    eval_s: float = 0.0  # sandbox time of every evaluation
    confirm_s: float = 0.0  # of the two, what confirming nominees on fresh seeds took
    cpu_s: float = 0.0  # CPU time of the training runs of the trials that had it measured
    cpu_trials: int = 0  # how many trials had it measured (a host that cannot count has none)
    baseline_score: float | None = None
    best_score: float | None = None


def get_search(session: Session, search_id: int) -> Search:
    """The search, or NotFound (an id no row can have included)."""
    search = session.get(Search, search_id) if is_row_id(search_id) else None
    if search is None:
        raise NotFound(f"no search {search_id}")
    return search


def list_searches(
    session: Session, *, limit: int, cursor: str | None, status: SearchStatus | None = None
) -> Page[Search]:
    """Newest first."""
    query = select(Search)
    if status is not None:
        query = query.where(Search.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if cursor is not None:
        query = query.where(Search.id < decode_id_cursor(cursor))
    rows = list(session.scalars(query.order_by(Search.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=next_cursor, total=total)


def search_stats(session: Session, search_ids: list[int]) -> dict[int, SearchStats]:
    if not search_ids:
        return {}
    # Settled trials from their stored blocks (`app.store.rollup`), the rest live.
    stored = select(
        TrialRollup.search_id,
        func.sum(TrialRollup.count),
        func.sum(case((TrialRollup.status == TrialStatus.FINISHED, TrialRollup.count), else_=0)),
        func.sum(case((TrialRollup.label == Label.OK, TrialRollup.count), else_=0)),
        func.sum(TrialRollup.cost_usd),
        func.sum(TrialRollup.wallclock_s),
        func.sum(TrialRollup.eval_s),
        func.sum(TrialRollup.confirm_s),
        func.sum(TrialRollup.cpu_s),
        func.sum(TrialRollup.cpu_trials),
    ).where(TrialRollup.search_id.in_(search_ids))
    live = (
        select(
            Trial.search_id,
            func.count(),
            func.count(case((Trial.status == TrialStatus.FINISHED, 1))),
            func.count(case((Trial.label == Label.OK, 1))),
            func.sum(Trial.cost_usd),
            func.sum(Trial.wallclock_s),
            func.sum(Trial.eval_s),
            func.sum(Trial.confirm_s),
            func.sum(Trial.cpu_s),
            func.count(Trial.cpu_s),
        )
        .join(Search, Search.id == Trial.search_id)
        .where(Trial.search_id.in_(search_ids), Trial.number >= Search.rollup_blocks * BLOCK)
    )
    counts: dict[int, list[float]] = {}
    for query in (stored.group_by(TrialRollup.search_id), live.group_by(Trial.search_id)):
        for search_id, *row in session.execute(query):
            seen = counts.setdefault(search_id, [0.0] * len(row))
            counts[search_id] = [a + float(b or 0) for a, b in zip(seen, row, strict=True)]
    baseline = dict(
        session.execute(
            select(Trial.search_id, Trial.score).where(
                Trial.search_id.in_(search_ids), Trial.number == 0
            )
        ).all()
    )
    best = dict(
        session.execute(
            select(Search.id, Trial.score)
            .join(Trial, Search.best_trial_id == Trial.id)
            .where(Search.id.in_(search_ids))
        ).all()
    )
    stats = {}
    for search_id in search_ids:
        total, finished, ok, cost, busy, scoring, confirming, cpu, cpu_trials = counts.get(
            search_id, [0.0] * 9
        )
        stats[search_id] = SearchStats(
            int(total), int(finished), int(ok), cost, busy, scoring, confirming, cpu,
            int(cpu_trials), baseline_score=baseline.get(search_id), best_score=best.get(search_id),
        )  # fmt: skip
    return stats
