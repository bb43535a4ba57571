"""A search that is not getting anywhere says why, on its page, in the API and the CLI.

Invariants (issue 18): an agent whose last five trials all failed the same
way is named with the reason and what to do; trials that wait with a free
slot and nothing sending them point at the scheduler, queued trials nobody
runs at a trial worker, proposals nobody takes at a proposal worker; a
healthy search, or a paused one waiting on purpose, says nothing of workers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.health import STALL_S, STREAK, Outcome, Pipeline, Waiting, warnings
from app.domain.states import Label, SearchStatus, TrialStatus
from app.store.clock import db_now
from testing.factories import Recipe, add_trial, seeded_search

DOWN = "model endpoint http://127.0.0.1:9/v1 failed: Connection error."


def test_an_agent_failing_every_proposal_the_same_way_is_named_with_what_to_do() -> None:
    failing = [Outcome(Label.INFRA_ERROR, DOWN)] * STREAK
    mixed = [Outcome(Label.CRASH, "boom"), *[Outcome(Label.INFRA_ERROR, DOWN)] * STREAK]

    said = warnings({"opt": failing, "arch": mixed, "knobs": failing[:-1]}, Pipeline())

    assert said == [
        f"agent opt: its last {STREAK} trials all ended infra_error ({DOWN}); its model "
        "endpoint (or our side) fails: check the endpoint and its key, then resume"
    ]


@pytest.mark.parametrize(
    ("pipeline", "says"),
    [
        (Pipeline(ready=Waiting(1, STALL_S + 1, "trials"), free_slots=1), "scheduler"),
        (Pipeline(ready=Waiting(1, STALL_S + 1, "trials"), free_slots=0), None),
        (Pipeline(queued=Waiting(2, STALL_S + 1, "gpu"), running=0), "queue 'gpu'"),
        (Pipeline(queued=Waiting(2, STALL_S + 1, "gpu"), running=2), None),
        (Pipeline(queued=Waiting(2, STALL_S - 1, "gpu"), running=0), None),
        (Pipeline(proposals=Waiting(3, STALL_S + 1, "propose")), "proposal worker"),
    ],
    ids=["no scheduler", "slots full", "no trial worker", "workers busy", "not yet",
         "no proposal worker"],
)  # fmt: skip
def test_work_nobody_takes_points_at_what_is_missing(pipeline: Pipeline, says: str | None) -> None:
    said = warnings({}, pipeline)

    if says is None:
        assert said == []
    else:
        assert len(said) == 1 and says in said[0]


def test_the_page_the_api_and_the_cli_show_them(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    assert client.get(f"/api/searches/{search.id}").json()["warnings"] == []
    for _ in range(STREAK):
        add_trial(session, search, agent="arch", parent=None, label=Label.INFRA_ERROR)
    waiting = add_trial(session, search, agent="opt", parent=None, label=None,
                        status=TrialStatus.QUEUED)  # fmt: skip
    waiting.queued_at = db_now(session) - timedelta(seconds=STALL_S * 2)
    session.query(type(waiting)).filter_by(search_id=search.id, status=TrialStatus.RUNNING).update(
        {"status": TrialStatus.FINISHED, "label": Label.CRASH}
    )
    session.commit()

    said = client.get(f"/api/searches/{search.id}").json()["warnings"]
    page = client.get(f"/searches/{search.id}").text

    assert len(said) == 2 and said[0].startswith(f"agent arch: its last {STREAK} trials")
    assert "no trial worker taking them: start one on queue 'trials'" in said[1]
    assert '<div class="banner" id="warnings" role="alert">' in page and "agent arch" in page
    search.status = SearchStatus.PAUSED  # waiting on purpose: only the failing agent remains
    session.commit()
    assert len(client.get(f"/api/searches/{search.id}").json()["warnings"]) == 1
