"""Settled trials, summed once per block so the search page never rescans them.

Trial numbers only grow, and a trial numbered below a search's lowest
unfinished one is finished (or cancelled) for good. So every whole block of
`BLOCK` numbers below that line can be aggregated by agent, status and label
once and stored (`trial_rollup`); the search page, a search's totals and
its label counts sum a few thousand stored rows plus the live tail instead
of a large search's every trial. The scheduler's tick advances the line while it holds the
search row, so two writers never sum the same block.
"""

from __future__ import annotations

from sqlalchemy import case, func, insert, literal, select
from sqlalchemy.orm import Session

from app.models import Search, Trial, TrialRollup
from app.states import UNFINISHED, Direction, Label

BLOCK = 128  # trial numbers per stored block: a power of two, as chart bucket widths are


def settled_before(session: Session, search_id: int) -> int:
    """The lowest unfinished trial number; every trial below it is settled.

    Two index lookups (the few unfinished trials; the last number), not a scan:
    every tick asks.
    """
    mine = Trial.search_id == search_id
    lowest = session.scalar(
        select(func.min(Trial.number)).where(mine, Trial.status.in_(UNFINISHED))
    )
    if lowest is not None:
        return int(lowest)
    last = session.scalar(select(func.max(Trial.number)).where(mine))
    return 0 if last is None else int(last) + 1


def label_counts(session: Session, search: Search) -> dict[str, int]:
    """Trials per outcome label, from the stored blocks plus the live tail."""
    stored = (
        select(TrialRollup.label, func.sum(TrialRollup.count))
        .where(TrialRollup.search_id == search.id, TrialRollup.label.is_not(None))
        .group_by(TrialRollup.label)
    )
    live = (
        select(Trial.label, func.count())
        .where(
            Trial.search_id == search.id,
            Trial.number >= search.rollup_blocks * BLOCK,
            Trial.label.is_not(None),
        )
        .group_by(Trial.label)
    )
    counts: dict[str, int] = {}
    for query in (stored, live):
        for label, count in session.execute(query):
            counts[str(label)] = counts.get(str(label), 0) + int(count)
    return dict(sorted(counts.items()))


def advance(session: Session, search: Search, direction: Direction) -> int:
    """Store the blocks that settled since the last call; returns how many are stored now.

    The caller holds the search row's lock (the scheduler's tick does).
    """
    settled = settled_before(session, search.id) // BLOCK
    done = search.rollup_blocks
    if settled <= done:
        return done
    best = func.max(Trial.score) if direction is Direction.MAXIMIZE else func.min(Trial.score)
    ok = Trial.label == Label.OK
    block = (Trial.number // BLOCK).label("block")  # grouped by name: Postgres matches it
    sums = (
        select(
            literal(search.id),
            block,
            Trial.agent_id,
            Trial.status,
            Trial.label,
            func.count(),
            best,
            func.coalesce(func.sum(case((ok & (Trial.delta > 0), 1), else_=0)), 0),
            func.max(case((ok, Trial.delta))),
            func.coalesce(func.sum(Trial.tokens_in + Trial.tokens_out), 0),
            func.coalesce(func.sum(Trial.cost_usd), 0.0),
            func.coalesce(func.sum(Trial.wallclock_s), 0.0),
        )
        .where(
            Trial.search_id == search.id,
            Trial.number >= done * BLOCK,
            Trial.number < settled * BLOCK,
        )
        .group_by(block, Trial.agent_id, Trial.status, Trial.label)
    )
    columns = ["search_id", "block", "agent_id", "status", "label", "count", "best", "wins",
               "best_delta", "tokens", "cost_usd", "wallclock_s"]  # fmt: skip
    session.execute(insert(TrialRollup).from_select(columns, sums))
    search.rollup_blocks = settled
    return settled
