"""The search loop's transitions, called directly on the real store (no broker, no sandbox).

Invariants: the baseline runs first and proposals are ready ahead of free
slots; a trial is claimed once however often its message arrives; a trial
whose worker vanished is re-queued, then labelled, never left `running`; a
cancel wins over a late finish; only a strict improvement becomes the best,
and a trial that finished before the baseline is judged against it once it
is scored; the search halts at its budget, or at once when its baseline fails.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.domain.labels import Verdict
from app.domain.spec import parse_spec
from app.domain.states import Decision, Label, SearchAction, SearchStatus, TrialStatus
from app.services.control import apply_action
from app.services.import_recipe import create_search
from app.services.propose import ProposalFailed, record_proposal
from app.services.run_trial import Execution
from app.store import events, transitions
from app.store import tick as ticks
from app.store.clock import db_now
from app.store.models import Event, Search, Trial
from sandbox import RunResult
from testing.factories import Recipe, spec_dict

HEARTBEAT_S = 1.0
MAX_ATTEMPTS = 2


def tick(database_url: str, search_id: int) -> list[ticks.Send]:
    with session_scope(database_url) as session:
        return ticks.tick(session, search_id, heartbeat_s=HEARTBEAT_S, max_attempts=MAX_ATTEMPTS)


def first_tick(database_url: str, search_id: int) -> tuple[int, list[int]]:
    """A new search's first tick: (the baseline it dispatches, the proposals it asks for)."""
    sends = tick(database_url, search_id)
    (baseline,) = (s.trial_id for s in sends if s.task is ticks.Task.RUN)
    return baseline, [s.trial_id for s in sends if s.task is ticks.Task.PROPOSE]


def new_search(session: Session, settings: Settings, recipe: Recipe, **search: Any) -> int:
    raw = spec_dict(recipe)
    raw["budgets"]["search"] = {"max_trials": 6, "max_concurrent": 2, **search}
    spec = parse_spec(raw)
    search_id = create_search(session, spec, settings=settings, actor="t").search.id
    session.commit()
    return search_id


def trial(database_url: str, trial_id: int) -> Trial:
    with session_scope(database_url) as session:
        found = session.get(Trial, trial_id)
        assert found is not None
        session.expunge(found)
        return found


def ran(label: Label, score: float | None, infra: str | None = None) -> Execution:
    run = RunResult(
        exit_code=0 if infra is None else None,
        oom_killed=False,
        timed_out=False,
        wallclock_s=1.0,
        artifact_bytes=10,
        log_tail="done\n",
        image_digest="sha256:x",
        isolated=True,
        infra_error=infra,
    )
    return Execution(Verdict(label, score, f"{label}"), run)


def run_to_end(database_url: str, trial_id: int, execution: Execution, worker: str = "w:1") -> bool:
    with session_scope(database_url) as session:
        assert transitions.claim(session, trial_id, worker)
    with session_scope(database_url) as session:
        return transitions.finish(session, trial_id, worker, execution, max_attempts=MAX_ATTEMPTS)


def commit_proposal(database_url: str, trial_id: int) -> None:
    """What a proposal does to the row when its edit is accepted (git is not the point here)."""
    with session_scope(database_url) as session:
        found = session.get(Trial, trial_id)
        assert found is not None and found.parent_id is not None
        parent = session.get(Trial, found.parent_id)
        assert parent is not None
        found.status, found.commit_sha = TrialStatus.READY, parent.commit_sha


def test_the_baseline_runs_first_while_proposals_are_made_ahead_of_free_slots(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)

    sends = tick(database_url, search_id)

    baseline = session.scalar(select(Trial).where(Trial.number == 0))
    assert baseline is not None
    proposals = [s for s in sends if s.task is ticks.Task.PROPOSE]
    runs = [s for s in sends if s.task is ticks.Task.RUN]
    assert runs == [ticks.Send(ticks.Task.RUN, baseline.id, "trials")]
    assert len(proposals) == 2  # one per slot, ready before the baseline frees its slot
    made = [trial(database_url, s.trial_id) for s in proposals]
    assert [t.parent_id for t in made] == [baseline.id, baseline.id]
    assert [t.status for t in made] == [TrialStatus.PROPOSED] * 2
    assert tick(database_url, search_id) == []  # nothing more until something changes


def test_a_trial_is_claimed_once_however_often_its_message_arrives(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    run = next(s for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)

    with session_scope(database_url) as unit:
        first = transitions.claim(unit, run.trial_id, "host:1")
    with session_scope(database_url) as unit:
        second = transitions.claim(unit, run.trial_id, "host:2")

    assert (first, second) == (True, False)
    assert trial(database_url, run.trial_id).worker == "host:1"
    assert trial(database_url, run.trial_id).attempts == 1


def test_only_a_strict_improvement_becomes_the_best(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    baseline, (first, second) = first_tick(database_url, search_id)
    assert run_to_end(database_url, baseline, ran(Label.OK, 0.5))
    for proposal in (first, second):
        commit_proposal(database_url, proposal)
    dispatched = [s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.RUN]
    assert dispatched == [first, second]

    assert run_to_end(database_url, first, ran(Label.OK, 0.5))  # a tie is no improvement
    assert run_to_end(database_url, second, ran(Label.OK, 0.7))

    with session_scope(database_url) as unit:
        search = unit.get(Search, search_id)
        assert search is not None and search.best_trial_id == second
        kinds = list(unit.scalars(select(Event.kind).where(Event.kind == "search.new_best")))
    assert kinds == ["search.new_best", "search.new_best"]  # the baseline, then `second`


@pytest.mark.parametrize(("scores", "kept"), [((0.4, 0.45), ()), ((0.4, 0.7), (1,))])
def test_trials_that_finish_before_the_baseline_are_judged_against_it_once_it_is_scored(
    session: Session,
    settings: Settings,
    recipe: Recipe,
    database_url: str,
    scores: tuple[float, float],
    kept: tuple[int, ...],
) -> None:
    search_id = new_search(session, settings, recipe, max_concurrent=3)
    baseline, proposals = first_tick(database_url, search_id)
    early = proposals[:2]
    for proposal in early:
        commit_proposal(database_url, proposal)
    tick(database_url, search_id)

    for trial_id, score in zip(early, scores, strict=True):
        assert run_to_end(database_url, trial_id, ran(Label.OK, score))  # the baseline still runs
    assert run_to_end(database_url, baseline, ran(Label.OK, 0.5))

    with session_scope(database_url) as unit:
        search = unit.get(Search, search_id)
        assert search is not None
        judged = [unit.get(Trial, trial_id) for trial_id in early]
        decisions = [t.decision for t in judged if t is not None]
        deltas = [t.delta for t in judged if t is not None]
        best = search.best_trial_id
    expected = [Decision.KEEP if i in kept else Decision.DISCARD for i in range(2)]
    assert decisions == expected
    assert deltas == pytest.approx([score - 0.5 for score in scores])
    assert best == (early[kept[-1]] if kept else baseline)


def test_an_infra_error_is_retried_then_kept_as_the_label(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    baseline = next(s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)

    assert run_to_end(database_url, baseline, ran(Label.INFRA_ERROR, None, infra="daemon gone"))
    assert trial(database_url, baseline).status == TrialStatus.READY
    assert ticks.Send(ticks.Task.RUN, baseline, "trials") in tick(database_url, search_id)
    assert run_to_end(database_url, baseline, ran(Label.INFRA_ERROR, None, infra="daemon gone"))

    final = trial(database_url, baseline)
    assert (final.status, final.label, final.attempts) == (
        TrialStatus.FINISHED,
        Label.INFRA_ERROR,
        MAX_ATTEMPTS,
    )


def test_a_trial_whose_worker_stopped_heartbeating_is_requeued_then_labelled(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    baseline = next(s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        with session_scope(database_url) as unit:
            assert transitions.claim(unit, baseline, f"dead:{attempt}")
            stale = db_now(unit) - timedelta(seconds=3 * HEARTBEAT_S)
            unit.execute(update(Trial).where(Trial.id == baseline).values(heartbeat_at=stale))
        sends = tick(database_url, search_id)
        if attempt < MAX_ATTEMPTS:
            assert ticks.Send(ticks.Task.RUN, baseline, "trials") in sends  # re-queued at once

    lost = trial(database_url, baseline)
    assert (lost.status, lost.label) == (TrialStatus.FINISHED, Label.INFRA_ERROR)
    assert "lost it" in (lost.label_reason or "")
    with session_scope(database_url) as unit:
        late = transitions.finish(
            unit, baseline, "dead:2", ran(Label.OK, 0.9), max_attempts=MAX_ATTEMPTS
        )
    assert late is False  # the vanished worker's late report changes nothing
    assert trial(database_url, baseline).label is Label.INFRA_ERROR


def test_cancel_takes_running_trials_and_a_late_finish_is_discarded(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    baseline = next(s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)
    with session_scope(database_url) as unit:
        assert transitions.claim(unit, baseline, "w:1")

    with session_scope(database_url) as unit:
        apply_action(unit, search_id, SearchAction.CANCEL, actor="t")
    with session_scope(database_url) as unit:
        beat = transitions.heartbeat(unit, baseline, "w:1")
        finished = transitions.finish(unit, baseline, "w:1", ran(Label.OK, 0.9), max_attempts=2)

    assert (beat, finished) == (False, False)  # the worker learns to kill its container
    with session_scope(database_url) as unit:
        statuses = set(unit.scalars(select(Trial.status).where(Trial.search_id == search_id)))
    assert statuses == {TrialStatus.CANCELLED}
    assert tick(database_url, search_id) == []


def test_the_search_halts_at_max_trials_once_nothing_is_in_flight(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe, max_trials=3, max_concurrent=2)
    baseline, proposals = first_tick(database_url, search_id)
    assert run_to_end(database_url, baseline, ran(Label.OK, 0.5))
    for proposal in proposals:
        commit_proposal(database_url, proposal)
    assert [s.trial_id for s in tick(database_url, search_id)] == proposals  # no new proposal
    assert run_to_end(database_url, proposals[0], ran(Label.CRASH, None))
    tick(database_url, search_id)
    with session_scope(database_url) as unit:
        assert unit.get(Search, search_id).status == SearchStatus.RUNNING  # type: ignore[union-attr]

    assert run_to_end(database_url, proposals[1], ran(Label.OK, 0.6))
    tick(database_url, search_id)

    with session_scope(database_url) as unit:
        search = unit.get(Search, search_id)
        assert search is not None
        assert (search.status, search.halt_reason) == (SearchStatus.FINISHED, "max_trials reached")
        assert search.finished_at is not None


def test_a_failed_baseline_halts_the_search_and_drops_what_would_run_next(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    baseline, (proposal, *_) = first_tick(database_url, search_id)
    commit_proposal(database_url, proposal)

    assert run_to_end(database_url, baseline, ran(Label.CRASH, None))
    tick(database_url, search_id)

    with session_scope(database_url) as unit:
        search = unit.get(Search, search_id)
        assert search is not None
        assert search.status == SearchStatus.FINISHED
        assert search.halt_reason == "the baseline failed (crash): crash"  # and its reason
    assert trial(database_url, proposal).status == TrialStatus.CANCELLED
    assert trial(database_url, baseline).decision is Decision.BASELINE  # never a discard


def test_a_paused_search_neither_proposes_nor_dispatches(
    session: Session, settings: Settings, recipe: Recipe, database_url: str, tmp_path: Path
) -> None:
    search_id = new_search(session, settings, recipe)
    with session_scope(database_url) as unit:
        apply_action(unit, search_id, SearchAction.PAUSE, actor="t")

    assert tick(database_url, search_id) == []
    with session_scope(database_url) as unit:
        apply_action(unit, search_id, SearchAction.RESUME, actor="t")
    assert tick(database_url, search_id) != []


def test_stagnation_halts_the_search_and_the_report_says_why_and_at_what_cost(
    session: Session, settings: Settings, recipe: Recipe, database_url: str, client: TestClient
) -> None:
    search_id = new_search(session, settings, recipe, stagnation_trials=2, max_concurrent=2)
    baseline, proposals = first_tick(database_url, search_id)
    assert run_to_end(database_url, baseline, ran(Label.OK, 0.5))
    for proposal in proposals:
        commit_proposal(database_url, proposal)
    tick(database_url, search_id)
    with session_scope(database_url) as unit:
        unit.execute(update(Trial).where(Trial.id.in_(proposals)).values(cost_usd=0.25))
    assert run_to_end(database_url, proposals[0], ran(Label.OK, 0.4))
    assert run_to_end(database_url, proposals[1], ran(Label.CRASH, None))
    tick(database_url, search_id)  # two finished trials without a new best
    with session_scope(database_url) as unit:
        late = unit.scalars(select(Trial.id).where(Trial.status == TrialStatus.PROPOSED)).all()
    for proposal in late:  # proposals in flight at the stop land, and are dropped
        commit_proposal(database_url, proposal)
    tick(database_url, search_id)

    report = client.get(f"/api/searches/{search_id}/report").json()

    assert report["status"] == "finished"
    assert report["halt_reason"] == "stagnation: no new best in 2 trials"
    assert (report["baseline_score"], report["best_score"], report["improvement"]) == (0.5, 0.5, 0)
    assert report["keeps"] == 0 and report["cost_usd"] == 0.5
    assert report["labels"]["ok"] == 2 and report["labels"]["crash"] == 1
    assert report["cost_per_point"] is None


def seeded(score_runs: tuple[float, ...], confirmation: tuple[float, ...] = ()) -> Execution:
    mean = sum(score_runs) / len(score_runs)
    return replace(ran(Label.OK, mean), runs=score_runs, confirmation=confirmation)


def test_with_a_noise_spec_only_a_candidate_past_the_noise_floor_is_kept(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    raw = spec_dict(recipe, noise={"baseline_runs": 4, "confirm_runs": 3})
    raw["budgets"]["search"] = {"max_trials": 10, "max_concurrent": 3}
    search_id = create_search(session, parse_spec(raw), settings=settings, actor="t").search.id
    session.commit()
    baseline, (noise, real, unconfirmed) = first_tick(database_url, search_id)
    assert run_to_end(database_url, baseline, seeded((0.50, 0.52, 0.48, 0.50)))
    for proposal in (noise, real, unconfirmed):
        commit_proposal(database_url, proposal)
    tick(database_url, search_id)

    assert run_to_end(database_url, noise, seeded((0.53, 0.505, 0.495, 0.50), (0.505, 0.495, 0.50)))
    assert run_to_end(database_url, real, seeded((0.61, 0.60, 0.61, 0.59), (0.60, 0.61, 0.59)))
    assert run_to_end(database_url, unconfirmed, seeded((0.70,)))  # never confirmed

    with session_scope(database_url) as unit:
        search = unit.get(Search, search_id)
        assert search is not None
        assert search.noise_sd == pytest.approx(0.016330, abs=1e-6)
        assert search.best_trial_id == real
        decisions = {t.id: t.decision for t in unit.scalars(select(Trial))}
        runs = unit.get(Trial, real).metrics["runs"]  # type: ignore[union-attr]
    assert decisions[baseline] == Decision.BASELINE
    assert (decisions[noise], decisions[real], decisions[unconfirmed]) == (
        Decision.DISCARD, Decision.KEEP, Decision.DISCARD,
    )  # fmt: skip
    assert runs == [0.61, 0.60, 0.61, 0.59]


def test_an_agent_whose_endpoint_keeps_failing_rests_without_spending_the_trial_budget(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe, max_trials=4, max_concurrent=1)
    sends = tick(database_url, search_id)
    baseline = next(s.trial_id for s in sends if s.task is ticks.Task.RUN)
    assert run_to_end(database_url, baseline, ran(Label.OK, 0.5))

    failed = 0
    while proposals := [s for s in sends if s.task is ticks.Task.PROPOSE]:
        for send in proposals:
            with session_scope(database_url) as unit:
                down = ProposalFailed(Label.INFRA_ERROR, "model endpoint failed: refused")
                record_proposal(unit, send.trial_id, down)
            failed += 1
        assert failed <= 10, "the agents never rested"
        sends = tick(database_url, search_id)

    assert failed == 3 * 3  # each of the three agents probed three times, then rests
    with session_scope(database_url) as unit:
        search = unit.get(Search, search_id)
        assert search is not None
        assert search.status == SearchStatus.RUNNING  # waiting out the outage, budget intact
        rested_since = db_now(unit) - timedelta(seconds=31)
        unit.execute(
            update(Trial).where(Trial.label == Label.INFRA_ERROR).values(finished_at=rested_since)
        )
    assert len([s for s in tick(database_url, search_id) if s.task is ticks.Task.PROPOSE]) == 1


def test_proposals_ahead_follow_the_measured_proposal_and_trial_times(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    """Issue 19: 4 s sessions for 2 s trials left slots waiting with one proposal per slot."""
    search_id = new_search(session, settings, recipe, max_trials=40)
    baseline, proposed = first_tick(database_url, search_id)
    run_to_end(database_url, baseline, ran(Label.OK, 0.5))
    for trial_id in proposed:
        commit_proposal(database_url, trial_id)
    with session_scope(database_url) as inner:
        ran_for = inner.get(Trial, baseline)
        assert ran_for is not None and ran_for.finished_at is not None
        ran_for.started_at = ran_for.finished_at - timedelta(seconds=2)  # a 2 s trial
        for trial_id in proposed:  # each proposal recorded 4 s after it was asked for
            made = inner.get(Trial, trial_id)
            assert made is not None
            recorded = made.created_at + timedelta(seconds=4)
            inner.add(Event(search_id=search_id, trial_id=trial_id, kind=events.PROPOSED,
                            actor="t", data={}, created_at=recorded))  # fmt: skip

    sends = tick(database_url, search_id)

    assert sorted(s.trial_id for s in sends if s.task is ticks.Task.RUN) == sorted(proposed)
    # Two slots busy for 2 s use up four trials while one 4 s proposal is made: 2 + 4.
    assert len([s for s in sends if s.task is ticks.Task.PROPOSE]) == 6
