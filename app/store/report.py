"""The halt report: why a search stopped, what it found, and what that cost.

Read from the store whenever asked (a running search gets a report so far):
the baseline and the best, how many new bests were kept on the way, the
labels, the money spent and the cost per point of improvement.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.leaderboard import label_counts
from app.store.models import Event, Search
from app.store.rollup import tallies
from app.store.searches import SearchStats, get_search, search_stats


@dataclass(frozen=True)
class HaltReport:
    search_id: int
    status: str
    halt_reason: str | None
    trials: int
    baseline_score: float | None
    best_score: float | None
    best_trial_id: int | None
    improvement: float | None  # positive is better, whichever the direction
    keeps: int  # times a new best was kept (the baseline's first score excluded)
    labels: dict[str, int]
    cost_usd: float
    cost_per_point: float | None  # dollars per unit of improvement of the metric
    sandbox_seconds: float  # every run: training (all seeds, preflights) and evaluation
    train_seconds: float
    eval_seconds: float
    sandbox_seconds_per_point: float | None
    confirm_seconds: float = 0.0  # of sandbox_seconds: confirming nominees on fresh seeds
    cpu_seconds: float | None = None  # CPU time of training, over the trials that had it counted
    cpu_trials: int = 0  # how many trials had their CPU time counted


def halt_report(session: Session, search_id: int, stats: SearchStats | None = None) -> HaltReport:
    """`stats`: the search's, when the caller has them already (a page that shows both)."""
    search: Search = get_search(session, search_id)
    stats = stats or search_stats(session, [search_id])[search_id]
    improvement = None
    if stats.best_score is not None and stats.baseline_score is not None:
        improvement = search.search_spec.evaluator.direction.gain(
            stats.best_score, stats.baseline_score
        )
    sandbox = stats.wallclock_s + stats.eval_s
    new_bests = session.scalar(
        select(func.count()).where(Event.search_id == search_id, Event.kind == "search.new_best")
    )
    return HaltReport(
        search_id=search_id,
        status=search.status,
        halt_reason=search.halt_reason,
        trials=stats.trials_total,
        baseline_score=stats.baseline_score,
        best_score=stats.best_score,
        best_trial_id=search.best_trial_id,
        improvement=improvement,
        keeps=max((new_bests or 0) - 1, 0),
        labels=label_counts(tallies(session, search)),
        cost_usd=stats.cost_usd,
        cost_per_point=stats.cost_usd / improvement if improvement else None,
        sandbox_seconds=sandbox,
        train_seconds=stats.wallclock_s,
        eval_seconds=stats.eval_s,
        confirm_seconds=stats.confirm_s,
        cpu_seconds=stats.cpu_s if stats.cpu_trials else None,
        cpu_trials=stats.cpu_trials,
        sandbox_seconds_per_point=sandbox / improvement if improvement else None,
    )
