"""Every in-flight trial has an owner and an age the sweep checks, paused or not (issue 14).

Invariants, on the store alone (SQLite and Postgres): a task message no
worker took is sent again; a proposal whose worker stopped heartbeating is
labelled `infra_error` without spending the trial budget; a lost run of a
paused search is taken back during the pause; a proposal is claimed once;
a lease whose renewals fail keeps its run (only the store ends a lease).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import Label, SearchAction, TrialStatus
from app.services import run_trial
from app.services.control import apply_action
from app.services.hosts import leased
from app.services.import_recipe import create_search
from app.store import tick as ticks
from app.store import transitions
from app.store.clock import db_now
from app.store.models import Trial
from testing.factories import Recipe, baseline_of, seeded_search, spec_dict
from testing.runners import InstantRunner

HEARTBEAT_S = 1.0


def tick(database_url: str, search_id: int) -> list[ticks.Send]:
    with session_scope(database_url) as session:
        return ticks.tick(session, search_id, heartbeat_s=HEARTBEAT_S, max_attempts=2)


def new_search(session: Session, settings: Settings, recipe: Recipe, **search: Any) -> int:
    raw = spec_dict(recipe)
    raw["agents"] = [a for a in raw["agents"] if a["kind"] == "control"]
    raw["budgets"]["search"] = {"max_trials": 4, "max_concurrent": 1, **search}
    search_id = create_search(session, parse_spec(raw), settings=settings, actor="t").search.id
    session.commit()
    return search_id


def age(database_url: str, trial_id: int, **columns_s: float) -> None:
    """Make the trial's timestamps `columns_s` seconds old (the clock is the database's)."""
    with session_scope(database_url) as session:
        now = db_now(session)
        values = {name: now - timedelta(seconds=s) for name, s in columns_s.items()}
        session.execute(update(Trial).where(Trial.id == trial_id).values(**values))


def status(database_url: str, trial_id: int) -> tuple[TrialStatus, Label | None, str | None]:
    with session_scope(database_url) as session:
        trial = session.get(Trial, trial_id)
        assert trial is not None
        return trial.status, trial.label, trial.label_reason


def test_a_run_message_no_worker_took_is_sent_again_once_per_period(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    run = next(s for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)
    assert run not in tick(database_url, search_id)  # just sent: not again yet

    age(database_url, run.trial_id, sent_at=ticks.RESEND_HEARTBEATS * HEARTBEAT_S + 1)

    assert run in tick(database_url, search_id)  # the broker lost it: sent again
    assert run not in tick(database_url, search_id)  # and not at every tick after
    assert status(database_url, run.trial_id)[0] is TrialStatus.QUEUED


def test_a_proposal_no_worker_took_is_sent_again_and_one_being_written_is_not(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe, max_concurrent=2)
    sends = tick(database_url, search_id)
    taken, waiting = [s.trial_id for s in sends if s.task is ticks.Task.PROPOSE][:2]
    with session_scope(database_url) as unit:
        assert transitions.claim_proposal(unit, taken, "host:1")
        assert not transitions.claim_proposal(unit, taken, "host:2")  # claimed once
    old = ticks.RESEND_HEARTBEATS * HEARTBEAT_S + 1
    age(database_url, taken, sent_at=old)
    age(database_url, waiting, sent_at=old)

    again = tick(database_url, search_id)

    assert ticks.Send(ticks.Task.PROPOSE, waiting) in again
    assert ticks.Send(ticks.Task.PROPOSE, taken) not in again


def test_a_proposal_whose_worker_died_is_an_infra_error_that_spends_no_budget(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe, max_trials=2)
    proposal = next(
        s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.PROPOSE
    )
    with session_scope(database_url) as unit:
        assert transitions.claim_proposal(unit, proposal, "host:1")
    age(database_url, proposal, heartbeat_at=ticks.STALE_HEARTBEATS * HEARTBEAT_S + 1)

    sends = tick(database_url, search_id)

    lost = status(database_url, proposal)
    assert lost[:2] == (TrialStatus.FINISHED, Label.INFRA_ERROR)
    assert "proposal lost" in (lost[2] or "")
    # max_trials 2 is the baseline and one proposal; the lost one did not use it up.
    assert [s for s in sends if s.task is ticks.Task.PROPOSE]


def test_a_lost_run_of_a_paused_search_is_taken_back_during_the_pause(
    session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search_id = new_search(session, settings, recipe)
    run = next(s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)
    with session_scope(database_url) as unit:
        assert transitions.claim(unit, run, "host:1")
        apply_action(unit, search_id, SearchAction.PAUSE, actor="t")
    age(database_url, run, heartbeat_at=ticks.STALE_HEARTBEATS * HEARTBEAT_S + 1)

    assert tick(database_url, search_id) == []  # paused: nothing new is dispatched

    assert status(database_url, run)[0] is TrialStatus.READY  # re-queued, waiting for resume
    with session_scope(database_url) as unit:
        assert search_id in ticks.active_searches(unit)  # the sweep keeps ticking it


def test_a_lease_whose_renewals_fail_keeps_its_run_until_the_store_ends_it(
    session: Session, settings: Settings, recipe: Recipe, database_url: str, tmp_path: Path
) -> None:
    search_id = new_search(session, settings, recipe)
    run = next(s.trial_id for s in tick(database_url, search_id) if s.task is ticks.Task.RUN)
    lost: list[str] = []
    away = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/nothing", data_dir=tmp_path, heartbeat_s=0.1
    )

    with leased(away, run, "host:1", on_lost=lambda: lost.append("lost")) as gone:
        gone.wait(0.6)  # several renewals fail (connection refused) meanwhile

    assert lost == [] and not gone.is_set()  # a failed renewal is not a lost lease
    with session_scope(database_url) as unit:
        assert transitions.claim(unit, run, "host:1")
    here = Settings(database_url=database_url, data_dir=tmp_path, heartbeat_s=0.1)
    with session_scope(database_url) as unit:  # the trial is taken from this worker
        unit.execute(update(Trial).where(Trial.id == run).values(worker="host:2"))
    with leased(here, run, "host:1", on_lost=lambda: lost.append("lost")) as gone:
        assert gone.wait(5)
    assert lost == ["lost"]


def test_a_trial_host_sweeps_a_trials_leftovers_only_when_an_earlier_attempt_could_have_left_them(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    """Fencing costs a daemon round trip per claim; a first attempt has nothing to fence."""
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = baseline_of(session, search)
    fresh, retried = (
        Trial(search_id=search.id, number=100 + n, parent_id=baseline.id, hypothesis="h",
              diff="", commit_sha=baseline.commit_sha, status=TrialStatus.QUEUED, attempts=n)
        for n in (0, 1)
    )  # fmt: skip
    session.add_all([fresh, retried])
    session.commit()
    runner = InstantRunner()

    for trial in (fresh, retried):
        assert run_trial.run(settings, runner, trial.id, worker="w:1", process_index=0)

    assert runner.swept == [[retried.id]]  # the second attempt, before it ran
    session.expire_all()
    assert {session.get(Trial, t.id).status for t in (fresh, retried)} == {TrialStatus.FINISHED}  # type: ignore[union-attr]
