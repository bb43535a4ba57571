"""Seeds a statistician would sign (issue 20): fresh confirmation, no score thrown away.

Invariants: a nominee is confirmed on seeds that neither its nominating run
nor any of the best's runs used; a trial one of whose seeds fails keeps the
runs that scored (the failure labels the trial, the reason names the seed);
nomination asks for a margin tied to the measured noise, so a zero-effect
edit spends far fewer confirmation runs than under "any gain" while a real
one is still confirmed; the record of every seed reaches the trial page;
sandbox time counts every run, training and evaluation apart, retried
attempts included, in the trial and in the search's report.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.labels import Verdict
from app.domain.noise import spread
from app.domain.seeds import Execution, SeedRun, fresh_seeds, repeat_seeds
from app.domain.spec import NoiseSpec
from app.domain.states import Direction, Label, TrialStatus
from app.store import transitions
from app.store.models import Trial
from app.store.report import halt_report
from testing.factories import Recipe, seeded_search

NOISE = NoiseSpec(baseline_runs=4, confirm_runs=3)


def scored(score: float) -> Execution:
    return Execution(Verdict(Label.OK, score, f"val_acc = {score:g}"), runs=(score,))


def test_confirmation_seeds_are_fresh_against_the_nominee_and_the_best() -> None:
    def recipe(true: float) -> Callable[[int], Execution]:
        def once(seed: int) -> Execution:
            return scored(true + seed / 1000)

        return once

    once = recipe(0.95)  # better than the baseline's 0.90: every candidate is nominated
    best = repeat_seeds(
        recipe(0.90), NOISE, baseline=True, best_runs=[], direction=Direction.MAXIMIZE
    )
    candidate = repeat_seeds(
        once, NOISE, baseline=False, best_runs=best.runs, direction=Direction.MAXIMIZE,
        best_seeds=[s.seed for s in best.seeds], noise_sd=0.0,
    )  # fmt: skip
    again = repeat_seeds(
        once, NOISE, baseline=False, best_runs=[0.0], direction=Direction.MAXIMIZE,
        best_seeds=[s.seed for s in candidate.seeds],
    )  # fmt: skip

    assert [s.seed for s in best.seeds] == [0, 1, 2, 3]
    assert [s.seed for s in candidate.seeds] == [0, 4, 5, 6]
    assert [s.seed for s in again.seeds] == [0, 1, 2, 3]  # fresh against that best: 0, 4-6
    assert fresh_seeds(3, {0, 1, 2, 3, 5}) == [4, 6, 7]


def test_a_failing_seed_fails_the_trial_and_keeps_the_runs_that_scored() -> None:
    def once(seed: int) -> Execution:
        if seed == 2:
            return Execution(Verdict(Label.BUDGET_OVERRUN, None, "killed at its 240s budget"))
        return scored(0.80 + seed / 100)

    result = repeat_seeds(once, NOISE, baseline=True, best_runs=[], direction=Direction.MAXIMIZE)

    assert result.verdict.label is Label.BUDGET_OVERRUN
    assert result.verdict.reason == "seed 2: killed at its 240s budget"
    assert result.runs == (0.80, 0.81)
    assert result.seeds == (
        SeedRun(0, Label.OK, 0.80, "val_acc = 0.8"),
        SeedRun(1, Label.OK, 0.81, "val_acc = 0.81"),
        SeedRun(2, Label.BUDGET_OVERRUN, None, "killed at its 240s budget"),
    )


def confirmation_runs(effect: float, nominate_k: float, direction: Direction) -> int:
    """Confirmation runs spent over 100 seeded candidates whose true gain is `effect` sds."""
    sign = 1 if direction.higher_is_better else -1
    noise = NOISE.model_copy(update={"nominate_k": nominate_k, "baseline_runs": 8})
    spent = 0
    for trial in range(100):
        rng = Random(trial)
        best = [rng.gauss(0, 1) for _ in range(noise.baseline_runs)]

        def once(seed: int, rng: Random = rng) -> Execution:
            return scored(rng.gauss(sign * effect, 1))

        result = repeat_seeds(
            once, noise, baseline=False, best_runs=best, direction=direction,
            best_seeds=range(noise.baseline_runs), noise_sd=spread(best),
        )  # fmt: skip
        spent += len(result.seeds) - 1
    return spent


@pytest.mark.parametrize("direction", list(Direction))
def test_nomination_needs_a_margin_tied_to_the_noise(direction: Direction) -> None:
    any_gain = confirmation_runs(0.0, nominate_k=0.0, direction=direction)
    margin = confirmation_runs(0.0, nominate_k=1.0, direction=direction)
    real = confirmation_runs(3.0, nominate_k=1.0, direction=direction)

    assert margin < any_gain / 2  # a zero-effect edit rarely earns confirmation now
    assert real >= 0.95 * 100 * NOISE.confirm_runs  # a real one still does


def test_every_seed_of_a_trial_is_recorded_and_shown(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    trial = session.query(Trial).filter_by(search_id=search.id, status=TrialStatus.RUNNING).one()
    execution = Execution(
        Verdict(Label.BUDGET_OVERRUN, None, "seed 4: killed at its 300s budget"),
        runs=(0.71, 0.72),
        seeds=(
            SeedRun(0, Label.OK, 0.71, "val_acc = 0.71"),
            SeedRun(4, Label.OK, 0.72, "val_acc = 0.72"),
            SeedRun(5, Label.BUDGET_OVERRUN, None, "killed at its 300s budget"),
        ),
    )
    trial.worker = "host:1"
    session.commit()

    assert transitions.finish(session, trial.id, "host:1", execution, max_attempts=1)
    session.commit()

    stored = client.get(f"/api/trials/{trial.id}").json()
    assert stored["label"] == "budget_overrun"
    assert [run["seed"] for run in stored["metrics"]["seeds"]] == [0, 4, 5]
    assert stored["metrics"]["runs"] == [0.71, 0.72]
    page = client.get(f"/trials/{trial.id}").text
    assert "seed 0: 0.71 (ok), seed 4: 0.72 (ok), seed 5: – (budget_overrun)" in page


def test_sandbox_seconds_add_up_every_run_training_and_evaluation_apart(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    def once(seed: int) -> Execution:
        timed = scored(0.8 + seed / 100)
        return Execution(timed.verdict, runs=timed.runs, train_s=10.0 + seed, eval_s=2.0)

    folded = repeat_seeds(once, NOISE, baseline=True, best_runs=[], direction=Direction.MAXIMIZE)
    assert (folded.train_s, folded.eval_s) == (10 + 11 + 12 + 13, 4 * 2.0)

    search = seeded_search(session, settings, recipe, "maximize")
    trial = session.query(Trial).filter_by(search_id=search.id, status=TrialStatus.RUNNING).one()
    trial.worker, trial.attempts = "host:1", 1
    session.commit()
    lost = Execution(Verdict(Label.INFRA_ERROR, None, "daemon went away"), train_s=3.0)
    assert transitions.finish(session, trial.id, "host:1", lost, max_attempts=2)  # retried
    assert transitions.cas(session, trial.id, (TrialStatus.READY,), status=TrialStatus.QUEUED)
    assert transitions.claim(session, trial.id, "host:1")
    assert transitions.finish(session, trial.id, "host:1", folded, max_attempts=2)
    session.commit()

    stored = session.get(Trial, trial.id)
    assert stored is not None
    assert (stored.wallclock_s, stored.eval_s) == (3.0 + 46.0, 8.0)  # the lost attempt too
    report = halt_report(session, search.id)
    every = sum(t.wallclock_s or 0 for t in session.query(Trial).filter_by(search_id=search.id))
    assert report.train_seconds == pytest.approx(every)
    assert report.sandbox_seconds == pytest.approx(report.train_seconds + report.eval_seconds)
    assert report.eval_seconds == pytest.approx(8.0)


def test_the_report_says_how_much_sandbox_time_confirmation_took(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    """Issue 20: confirmation spends budget; a user must see how much, beside the total."""

    def once(seed: int) -> Execution:
        timed = scored(0.95 + seed / 1000)
        return Execution(timed.verdict, runs=timed.runs, train_s=10.0, eval_s=2.0)

    nominee = repeat_seeds(
        once, NOISE, baseline=False, best_runs=[0.9], direction=Direction.MAXIMIZE
    )
    unnominated = repeat_seeds(
        once, NOISE, baseline=False, best_runs=[0.99], direction=Direction.MAXIMIZE
    )
    baseline = repeat_seeds(once, NOISE, baseline=True, best_runs=[], direction=Direction.MAXIMIZE)
    assert nominee.confirm_s == 3 * 12.0  # its three fresh seeds, training and evaluation
    assert unnominated.confirm_s == 0.0 and baseline.confirm_s == 0.0

    search = seeded_search(session, settings, recipe, "maximize")
    trial = session.query(Trial).filter_by(search_id=search.id, status=TrialStatus.RUNNING).one()
    trial.worker, trial.attempts = "host:1", 1
    session.commit()
    assert transitions.finish(session, trial.id, "host:1", nominee, max_attempts=2)
    session.commit()

    report = halt_report(session, search.id)
    assert report.confirm_seconds == pytest.approx(36.0)
    assert report.sandbox_seconds >= report.confirm_seconds
