"""A failed baseline says which seed failed and why, and the search resumes after a budget change.

Issue 20: a baseline whose seed 1 overran its wall-clock used to become a
`discard` and halt the search with no way on. Now the halt reason names the
seed and its failure, the baseline keeps its decision, and the documented
path works: raise the budget (`PATCH /api/searches/{id}/budgets`), resume,
and the baseline runs again (its old outcome kept in an event).
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.domain.labels import Verdict
from app.domain.seeds import Execution
from app.domain.states import Decision, Label, SearchStatus, TrialStatus
from app.store import tick as ticks
from app.store import transitions
from app.store.models import Event, Search, Trial
from testing.factories import Recipe, seeded_search

OVERRUN = "seed 1: killed at its 300s wall-clock budget (ran 300.2s)"


def failed_baseline(session: Session, settings: Settings, recipe: Recipe) -> Search:
    """A search whose baseline (still running) then overruns on its second seed."""
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = session.query(Trial).filter_by(search_id=search.id, number=0).one()
    baseline.status, baseline.label, baseline.score = TrialStatus.RUNNING, None, None
    baseline.worker, baseline.decision = "host:1", None
    session.commit()
    overran = Execution(Verdict(Label.BUDGET_OVERRUN, None, OVERRUN), train_s=600.4)
    assert transitions.finish(session, baseline.id, "host:1", overran, max_attempts=1)
    session.commit()
    return search


def tick(database_url: str, search_id: int) -> list[ticks.Send]:
    with session_scope(database_url) as session:
        return ticks.tick(session, search_id, heartbeat_s=1.0, max_attempts=1)


def test_a_failed_baseline_names_its_seed_and_resumes_after_its_budget_is_raised(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe, database_url: str
) -> None:
    search = failed_baseline(session, settings, recipe)
    tick(database_url, search.id)

    halted = client.get(f"/api/searches/{search.id}").json()
    assert halted["status"] == "finished"
    assert halted["halt_reason"] == f"the baseline failed (budget_overrun): {OVERRUN}"
    baseline = client.get(f"/api/searches/{search.id}/trials", params={"sort": "oldest"}).json()
    assert baseline["items"][0]["decision"] == Decision.BASELINE

    raised = client.patch(
        f"/api/searches/{search.id}/budgets", json={"trial": {"wallclock_s": "10m"}}
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["spec"]["budgets"]["trial"]["wallclock_s"] == 600.0
    assert raised.json()["spec"]["budgets"]["trial"]["memory"] == 1024**3  # the rest is kept
    resumed = client.post(f"/api/searches/{search.id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert resumed.json()["halt_reason"] is None

    sends = tick(database_url, search.id)

    with session_scope(database_url) as unit:
        again = unit.query(Trial).filter_by(search_id=search.id, number=0).one()
        assert ticks.Send(ticks.Task.RUN, again.id, "trials") in sends  # it runs again
        assert (again.status, again.label) == (TrialStatus.QUEUED, None)
        kept = unit.query(Event).filter_by(trial_id=again.id, kind="trial.retried").one()
        assert kept.data["reason"] == OVERRUN  # the failure is still on the record
        assert unit.get(Search, search.id).status is SearchStatus.RUNNING  # type: ignore[union-attr]


def test_a_bad_budget_is_refused_naming_the_field_and_changes_nothing(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    before = client.get(f"/api/searches/{search.id}").json()["spec"]

    bad = client.patch(f"/api/searches/{search.id}/budgets", json={"trial": {"wallclock_s": -1}})
    unknown = client.patch(f"/api/searches/{search.id}/budgets", json={"gpu": {"count": 2}})

    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["detail"]] == ["budgets.trial.wallclock_s"]
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "budgets.gpu"
    assert client.get(f"/api/searches/{search.id}").json()["spec"] == before
