"""Stored blocks of settled trials: each trial summed once, and the page unchanged by them.

Invariants: only whole blocks below the lowest unfinished trial are stored;
advancing twice stores nothing twice; the search page and the search's
totals from stored blocks plus the live tail are exactly what summing every
trial gives, cancelled trials included in the totals and never drawn.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.dashboard.views import search_view
from app.domain.states import Label, TrialStatus
from app.store import rollup
from app.store.models import Agent, Search, Trial, TrialRollup
from app.store.report import halt_report
from app.store.rollup import BLOCK
from app.store.searches import search_stats
from testing.factories import Recipe, seeded_search

LABELS = [Label.OK, Label.OK, Label.OK, Label.CRASH, Label.GATE_MISS, Label.DUPLICATE]


def grow(session: Session, search: Search, until: int, *, running: set[int] = frozenset()) -> None:
    """Finish the seeded trials, then append trials up to number `until` - 1 in one insert."""
    session.execute(
        update(Trial)
        .where(Trial.search_id == search.id, Trial.status == TrialStatus.RUNNING)
        .values(status=TrialStatus.FINISHED, label=Label.CRASH)
    )
    first = session.scalar(select(func.max(Trial.number)).where(Trial.search_id == search.id)) + 1
    agents = list(session.scalars(select(Agent.id).where(Agent.search_id == search.id)))
    rng = random.Random(until)
    rows = []
    for number in range(first, until):
        label = rng.choice(LABELS)
        score = rng.uniform(0.3, 0.9) if label is Label.OK else None
        live = number in running
        rows.append({
            "search_id": search.id, "number": number, "agent_id": rng.choice(agents),
            "status": TrialStatus.RUNNING if live else TrialStatus.FINISHED,
            "label": None if live else label, "score": None if live else score,
            "delta": None if score is None or live else score - 0.6,
            "tokens_in": 100, "tokens_out": number % 7, "cost_usd": 0.001,
            "wallclock_s": None if live else 1.5,
            "cpu_s": None if live or number % 3 == 0 else 0.5,  # some hosts cannot count it
        })  # fmt: skip
    session.execute(insert(Trial), rows)
    session.flush()


def stored_count(session: Session, search_id: int) -> int:
    total = session.scalar(
        select(func.sum(TrialRollup.count)).where(TrialRollup.search_id == search_id)
    )
    return int(total or 0)


def finished_below(session: Session, search_id: int, number: int) -> int:
    return session.scalar(
        select(func.count()).where(
            Trial.search_id == search_id,
            Trial.number < number,
            Trial.status == TrialStatus.FINISHED,
        )
    )


def test_only_whole_blocks_below_the_lowest_unfinished_trial_are_stored_once(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    grow(session, search, 5 * BLOCK + 3, running={2 * BLOCK + 10})

    assert rollup.advance(session, search) == 2
    assert rollup.advance(session, search) == 2
    assert stored_count(session, search.id) == finished_below(session, search.id, 2 * BLOCK)

    session.execute(
        update(Trial)
        .where(Trial.search_id == search.id, Trial.number == 2 * BLOCK + 10)
        .values(status=TrialStatus.FINISHED, label=Label.OOM)
    )
    assert rollup.advance(session, search) == 5
    assert stored_count(session, search.id) == finished_below(session, search.id, 5 * BLOCK)
    session.commit()
    assert session.get(Search, search.id).rollup_blocks == 5  # type: ignore[union-attr]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_search_page_from_stored_blocks_matches_summing_every_trial(
    session: Session, settings: Settings, recipe: Recipe, direction: str
) -> None:
    search = seeded_search(session, settings, recipe, direction)
    # Enough trials that a chart bucket spans two blocks, and an odd number of
    # stored blocks: a bucket straddles the stored line.
    size = 300 * BLOCK + 1000
    grow(session, search, size, running={size - 5, size - 2})
    session.execute(  # a cancelled trial among the settled ones: counted, never drawn
        update(Trial)
        .where(Trial.search_id == search.id, Trial.number == 3 * BLOCK + 1)
        .values(status=TrialStatus.CANCELLED, label=None, score=None, delta=None)
    )
    every = search_view(session, search)
    totals = search_stats(session, [search.id])
    labels = halt_report(session, search.id).labels

    stored = rollup.advance(session, search)
    assert stored == (size - 5) // BLOCK and stored % 2 == 1
    drawn = search_view(session, search)

    def buckets(view: object) -> list[tuple[object, ...]]:
        return sorted(
            (b.first, b.last, b.agent, b.label, b.count, b.best)
            for b in view.buckets  # type: ignore[attr-defined]
        )

    assert halt_report(session, search.id).labels == labels == drawn.labels
    summed, before = search_stats(session, [search.id])[search.id], totals[search.id]
    assert replace(summed, cost_usd=0.0) == replace(before, cost_usd=0.0)
    assert summed.cost_usd == pytest.approx(before.cost_usd)  # summed in another order
    assert (before.trials_total, before.trials_finished) == (size, size - 3)
    measured = select(Trial.cpu_s).where(Trial.search_id == search.id, Trial.cpu_s.is_not(None))
    counted = session.scalars(measured).all()
    assert before.cpu_trials == len(counted) > 0 and before.cpu_s == pytest.approx(sum(counted))
    report = halt_report(session, search.id)
    assert (report.cpu_seconds, report.cpu_trials) == (summed.cpu_s, len(counted))
    assert [replace(s, cost_usd=0.0) for s in drawn.leaderboard] == [
        replace(s, cost_usd=0.0) for s in every.leaderboard
    ]
    assert [s.cost_usd for s in drawn.leaderboard] == pytest.approx(
        [s.cost_usd for s in every.leaderboard]
    )
    assert drawn.labels == every.labels
    assert buckets(drawn) == buckets(every)
    assert len(drawn.buckets) <= 300 * len(LABELS) * 4
