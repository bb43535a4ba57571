"""Searches over HTTP: create from a spec, list page by page, read, and move through states.

Invariant: a search is created whole (recipe imported, roster and baseline
recorded) or not at all, and its status changes only along legal moves.
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from testing.factories import Recipe, spec_dict


def create(client: TestClient, recipe: Recipe, **overrides: object) -> dict[str, object]:
    response = client.post("/api/searches", json=spec_dict(recipe, **overrides))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_creating_a_search_imports_the_recipe_and_records_the_baseline(
    client: TestClient, recipe: Recipe
) -> None:
    search = create(client, recipe)

    assert search["status"] == "running"
    assert [agent["name"] for agent in search["agents"]] == ["opt", "arch", "knobs"]  # type: ignore[attr-defined]
    assert len(search["base_commit"]) == 40  # type: ignore[arg-type]
    assert search["stats"] == {
        "trials_total": 1,
        "trials_finished": 0,
        "trials_ok": 0,
        "cost_usd": 0.0,
        "wallclock_s": 0.0,
        "eval_s": 0.0,
        "baseline_score": None,
        "best_score": None,
    }
    trials = client.get(f"/api/searches/{search['id']}/trials").json()["items"]
    assert len(trials) == 1
    baseline = client.get(f"/api/trials/{trials[0]['id']}").json()
    assert baseline["number"] == 0
    assert baseline["parent_id"] is None
    assert baseline["diff"] == ""
    assert baseline["commit_sha"] == search["base_commit"]
    assert baseline["status"] == "ready"


def test_the_stored_spec_is_normalised_so_it_reads_back_in_canonical_units(
    client: TestClient, recipe: Recipe
) -> None:
    spec = create(client, recipe)["spec"]

    assert spec["budgets"]["trial"]["wallclock_s"] == 300.0  # type: ignore[index]
    assert spec["budgets"]["trial"]["memory"] == 1024**3  # type: ignore[index]
    assert spec["evaluator"]["gates"] == ["val_acc >= 0.5"]  # type: ignore[index]


def test_listing_pages_through_every_search_once_newest_first(
    client: TestClient, recipe: Recipe
) -> None:
    ids = [create(client, recipe, name=f"search-{n}")["id"] for n in range(5)]

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/searches", params=params).json()
        assert page["total"] == 5
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(ids, reverse=True)


def test_listing_filters_by_status(client: TestClient, recipe: Recipe) -> None:
    first = create(client, recipe)
    create(client, recipe)
    client.post(f"/api/searches/{first['id']}/pause")

    page = client.get("/api/searches", params={"status": "paused"}).json()

    assert [item["id"] for item in page["items"]] == [first["id"]]
    assert page["total"] == 1


def test_a_missing_search_is_a_404_with_a_reason(client: TestClient) -> None:
    response = client.get("/api/searches/999")

    assert response.status_code == 404
    assert response.json() == {"error": "NotFound", "detail": "no search 999"}


def test_pause_resume_and_cancel_follow_the_state_machine(
    client: TestClient, recipe: Recipe
) -> None:
    search_id = create(client, recipe)["id"]

    def act(action: str) -> tuple[int, str | None]:
        response = client.post(f"/api/searches/{search_id}/{action}")
        return response.status_code, response.json().get("status")

    assert act("resume") == (409, None)
    assert act("pause") == (200, "paused")
    assert act("pause") == (409, None)
    assert act("resume") == (200, "running")
    assert act("cancel") == (200, "cancelled")
    for action in ("pause", "resume", "cancel"):
        response = client.post(f"/api/searches/{search_id}/{action}")
        assert response.status_code == 409
        assert response.json() == {
            "error": "Conflict",
            "detail": {"action": action, "status": "cancelled"},
        }
    assert client.get(f"/api/searches/{search_id}").json()["finished_at"] is not None


def test_cancelling_a_search_cancels_its_unstarted_trials(
    client: TestClient, recipe: Recipe
) -> None:
    search_id = create(client, recipe)["id"]

    client.post(f"/api/searches/{search_id}/cancel")

    trials = client.get(f"/api/searches/{search_id}/trials").json()["items"]
    assert [trial["status"] for trial in trials] == ["cancelled"]


def test_an_unknown_action_is_a_422_not_a_state_change(client: TestClient, recipe: Recipe) -> None:
    search_id = create(client, recipe)["id"]

    response = client.post(f"/api/searches/{search_id}/explode")

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "path.action"
    assert client.get(f"/api/searches/{search_id}").json()["status"] == "running"


def test_state_changes_are_written_to_the_audit_log(client: TestClient, recipe: Recipe) -> None:
    search_id = create(client, recipe)["id"]
    client.post(f"/api/searches/{search_id}/pause")
    client.post(f"/api/searches/{search_id}/cancel")

    lines = client.get(f"/api/searches/{search_id}/export").text.splitlines()

    records = [json.loads(line) for line in lines]
    kinds = [r["data"]["kind"] for r in records if r["record"] == "event"]
    assert kinds == ["search.created", "search.pause", "search.cancel"]
