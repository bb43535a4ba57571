"""Settled trials, summed once per block so no page or prompt rescans them.

Trial numbers only grow, and a trial numbered below a search's lowest
unfinished one is finished (or cancelled) for good. So every whole block of
`BLOCK` numbers below that line can be aggregated by agent, status and label
once and stored (`trial_rollup`); the search page, a search's totals, the
leaderboard and the label counts sum a few thousand stored rows plus the
live tail instead of a large search's every trial. The scheduler's tick
advances the line while it holds the search row, so two writers never sum
the same block.
"""

from __future__ import annotations

from sqlalchemy import case, func, insert, literal, select
from sqlalchemy.orm import Session

from app.domain.leaderboard import BASELINE_AGENT, Tally
from app.domain.states import UNFINISHED, Decision, Label
from app.store.models import Agent, Search, Trial, TrialRollup
from app.store.ordering import best_of

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


def tallies(session: Session, search: Search) -> list[Tally]:
    """Trials per agent, status and label: the stored blocks plus the live tail.

    What every leaderboard and label count is summed from
    (`app.domain.leaderboard`).
    """
    names: dict[int | None, str] = dict(
        session.execute(select(Agent.id, Agent.name).where(Agent.search_id == search.id)).all()
    )
    stored = (
        select(
            TrialRollup.agent_id,
            TrialRollup.status,
            TrialRollup.label,
            func.sum(TrialRollup.count),
            func.sum(TrialRollup.keeps),
            func.max(TrialRollup.best_delta),
            func.sum(TrialRollup.tokens),
            func.sum(TrialRollup.cost_usd),
        )
        .where(TrialRollup.search_id == search.id)
        .group_by(TrialRollup.agent_id, TrialRollup.status, TrialRollup.label)
    )
    live = (
        select(
            Trial.agent_id,
            Trial.status,
            Trial.label,
            func.count(),
            func.coalesce(func.sum(case((Trial.decision == Decision.KEEP, 1), else_=0)), 0),
            func.max(case((Trial.label == Label.OK, Trial.delta))),
            func.coalesce(func.sum(Trial.tokens_in + Trial.tokens_out), 0),
            func.coalesce(func.sum(Trial.cost_usd), 0.0),
        )
        .where(Trial.search_id == search.id, Trial.number >= search.rollup_blocks * BLOCK)
        .group_by(Trial.agent_id, Trial.status, Trial.label)
    )
    return [
        Tally(
            agent=names.get(agent_id, BASELINE_AGENT),
            status=status,
            label=label,
            count=int(count),
            keeps=int(keeps or 0),
            best_delta=best_delta,
            tokens=int(tokens or 0),
            cost_usd=float(cost or 0.0),
        )
        for query in (stored, live)
        for agent_id, status, label, count, keeps, best_delta, tokens, cost in session.execute(
            query
        )
    ]


def advance(session: Session, search: Search) -> int:
    """Store the blocks that settled since the last call; returns how many are stored now.

    The caller holds the search row's lock (the scheduler's tick does).
    """
    settled = settled_before(session, search.id) // BLOCK
    done = search.rollup_blocks
    if settled <= done:
        return done
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
            best_of(Trial.score, search.search_spec.evaluator.direction),
            func.coalesce(func.sum(case((Trial.decision == Decision.KEEP, 1), else_=0)), 0),
            func.max(case((ok, Trial.delta))),
            func.coalesce(func.sum(Trial.tokens_in + Trial.tokens_out), 0),
            func.coalesce(func.sum(Trial.cost_usd), 0.0),
            func.coalesce(func.sum(Trial.wallclock_s), 0.0),
            func.coalesce(func.sum(Trial.eval_s), 0.0),
            func.coalesce(func.sum(Trial.confirm_s), 0.0),
            func.coalesce(func.sum(Trial.cpu_s), 0.0),
            func.count(Trial.cpu_s),
        )
        .where(
            Trial.search_id == search.id,
            Trial.number >= done * BLOCK,
            Trial.number < settled * BLOCK,
        )
        .group_by(block, Trial.agent_id, Trial.status, Trial.label)
    )
    columns = [
        *("search_id", "block", "agent_id", "status", "label", "count", "best", "keeps"),
        *("best_delta", "tokens", "cost_usd", "wallclock_s", "eval_s", "confirm_s", "cpu_s"),
        "cpu_trials",
    ]
    session.execute(insert(TrialRollup).from_select(columns, sums))
    search.rollup_blocks = settled
    return settled
