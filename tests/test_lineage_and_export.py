"""The lineage tree and the JSONL export.

Invariants: every recorded parent -> child link is an edge; the best path
runs from the baseline to the best trial; the export holds exactly what the
API serves, so it round-trips through the same models.
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.schemas import EventOut, SearchOut, TrialOut
from app.config import Settings
from app.store.models import Event, Trial
from testing.factories import Recipe, seeded_search


def test_lineage_has_every_trial_as_a_node_and_every_parent_link_as_an_edge(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    ids = {t.number: t.id for t in session.query(Trial).filter_by(search_id=search.id)}

    lineage = client.get(f"/api/searches/{search.id}/lineage").json()

    assert [node["number"] for node in lineage["nodes"]] == list(range(8))
    edges = {(e["parent"], e["child"]) for e in lineage["edges"]}
    expected = {(ids[0], ids[1]), (ids[0], ids[2])} | {(ids[1], ids[n]) for n in range(3, 8)}
    assert edges == expected
    assert lineage["best_path"] == [ids[0], ids[1]]  # trial 1 (0.70) was kept; none beat it


def test_the_best_path_runs_from_the_baseline_to_the_best_trial(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    trials = {t.number: t for t in session.query(Trial).filter_by(search_id=search.id)}
    search.best_trial_id = trials[6].id
    session.commit()

    lineage = client.get(f"/api/searches/{search.id}/lineage").json()

    assert lineage["best_trial_id"] == trials[6].id
    assert lineage["best_path"] == [trials[0].id, trials[1].id, trials[6].id]
    assert client.get(f"/api/searches/{search.id}").json()["stats"]["best_score"] == 0.65


def test_lineage_pages_keep_parents_before_children(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    first = client.get(f"/api/searches/{search.id}/lineage", params={"limit": 5}).json()
    second = client.get(
        f"/api/searches/{search.id}/lineage", params={"limit": 5, "cursor": first["next_cursor"]}
    ).json()

    seen = [n["id"] for n in first["nodes"] + second["nodes"]]
    assert len(seen) == len(set(seen)) == 8
    assert second["next_cursor"] is None
    position = {trial_id: index for index, trial_id in enumerate(seen)}
    for edge in first["edges"] + second["edges"]:
        assert position[edge["parent"]] < position[edge["child"]]


def test_the_export_round_trips_through_the_api_models(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    client.post(f"/api/searches/{search.id}/pause")

    response = client.get(f"/api/searches/{search.id}/export")

    assert response.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in response.text.splitlines()]
    events = session.query(Event).filter_by(search_id=search.id).order_by(Event.id)
    stored = [event.kind for event in events]
    assert [r["record"] for r in records] == ["search"] + ["trial"] * 8 + ["event"] * len(stored)
    head = SearchOut.model_validate(records[0]["data"])
    assert head.model_dump(mode="json") == client.get(f"/api/searches/{search.id}").json()
    for record in records[1:9]:
        trial = TrialOut.model_validate(record["data"])
        served = client.get(f"/api/trials/{trial.id}").json()
        assert trial.model_dump(mode="json") == served == record["data"]
    kinds = [EventOut.model_validate(r["data"]).kind for r in records[9:]]
    assert kinds == stored
    assert kinds[0] == "search.created" and kinds[-1] == "search.pause"


def test_exporting_a_missing_search_is_a_404_before_streaming(client: TestClient) -> None:
    response = client.get("/api/searches/404/export")

    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"
