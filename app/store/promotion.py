"""Applies the keep rule (`app.domain.promotion`) to a finished trial: new best or discard.

The baseline sets the noise floor (the spread of its seeds) and settles the
trials that finished before it: they were kept provisionally and are judged
against it now.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain import promotion
from app.domain.noise import spread
from app.domain.seeds import FIRST_SEED, Execution
from app.domain.states import Decision, TrialStatus
from app.store import events
from app.store.models import Search, Trial

ACTOR = "scheduler"


def best_runs(trial: Trial | None) -> list[float]:
    """The scores of a kept trial's seed runs (its one score when it ran one seed)."""
    if trial is None or trial.score is None:
        return []
    runs = (trial.metrics or {}).get("runs")
    return [float(run) for run in runs] if runs else [trial.score]


def best_seeds(trial: Trial | None) -> list[int]:
    """The seeds a kept trial's runs used (seed 0 alone when it ran one)."""
    if trial is None:
        return []
    seeds = (trial.metrics or {}).get("seeds")
    return [int(run["seed"]) for run in seeds] if seeds else [FIRST_SEED]


def decide(session: Session, search: Search, trial: Trial, execution: Execution) -> Decision:
    """Keep (make it the new best) or discard a scored trial; the baseline is its own case."""
    assert trial.score is not None
    spec = search.search_spec
    direction = spec.evaluator.direction
    current = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
    if trial.number == 0:
        if len(execution.runs) > 1:
            search.noise_sd = spread(execution.runs)
        _judge_early(session, search, trial, current)
        return Decision.BASELINE
    keep = promotion.keeps(
        trial.score,
        best_score=current.score if current is not None else None,
        best_runs=best_runs(current),
        confirmation=execution.confirmation,
        noise=spec.noise,
        noise_sd=search.noise_sd or 0.0,
        direction=direction,
    )
    if keep:
        _make_best(session, search, trial, current)
    return Decision.KEEP if keep else Decision.DISCARD


def _judge_early(session: Session, search: Search, baseline: Trial, current: Trial | None) -> None:
    """Judge the trials that finished before the baseline, now that it has a score.

    If the provisional best does not stay, the baseline is the best.
    """
    assert baseline.score is not None
    spec = search.search_spec
    direction = spec.evaluator.direction
    early = session.scalars(
        select(Trial).where(
            Trial.search_id == search.id,
            Trial.id != baseline.id,
            Trial.status == TrialStatus.FINISHED,
            Trial.score.is_not(None),
        )
    )
    for trial in early:
        assert trial.score is not None
        if trial.parent_id == baseline.id:
            trial.delta = direction.gain(trial.score, baseline.score)
        stays = promotion.survives_baseline(
            trial.score, baseline.score, noise=spec.noise, direction=direction
        )
        if trial.decision is Decision.KEEP and not stays:
            trial.decision = Decision.DISCARD
            events.record(
                session,
                search_id=search.id,
                trial_id=trial.id,
                kind="trial.discarded",
                actor=ACTOR,
                data={"reason": "finished before the baseline and does not beat it"},
            )
    if current is None or current.decision is not Decision.KEEP:
        _make_best(session, search, baseline, current)


def _make_best(session: Session, search: Search, trial: Trial, current: Trial | None) -> None:
    search.best_trial_id = trial.id
    events.record(
        session,
        search_id=search.id,
        trial_id=trial.id,
        kind="search.new_best",
        actor=ACTOR,
        data={"score": trial.score, "previous": current.score if current else None},
    )
