"""Trials over HTTP: filtered, sorted, cursor-paginated listings and one trial whole.

Invariants: "best" follows the metric's direction from the spec; unscored
(failed) trials sort last; paging visits every matching trial exactly once,
even while new trials arrive between pages.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.store.models import Search, Trial
from testing.factories import Recipe, add_trial, seeded_search


def listing(client: TestClient, search: Search, **params: object) -> list[dict[str, object]]:
    """Every page of a listing, followed by cursor, flattened."""
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/api/searches/{search.id}/trials", params=query).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_best_first_follows_a_maximised_metric_with_failures_last(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    rows = listing(client, search, sort="best", limit=3)

    assert [r["score"] for r in rows] == [0.70, 0.70, 0.65, 0.60, 0.50, None, None, None]
    assert [r["number"] for r in rows][:2] == [1, 4]


def test_best_first_follows_a_minimised_metric(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "minimize")

    best = listing(client, search, sort="best", limit=2)
    worst = listing(client, search, sort="worst", limit=2)

    assert [r["score"] for r in best] == [0.50, 0.60, 0.65, 0.70, 0.70, None, None, None]
    assert [r["score"] for r in worst] == [0.70, 0.70, 0.65, 0.60, 0.50, None, None, None]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize("sort", ["newest", "oldest", "best", "worst"])
def test_paging_back_returns_the_very_pages_a_reader_left(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe, sort: str,
    direction: str,
) -> None:  # fmt: skip
    search = seeded_search(session, settings, recipe, direction)
    url = f"/api/searches/{search.id}/trials"
    forward, page = [], client.get(url, params={"sort": sort, "limit": 3}).json()
    assert page["prev_cursor"] is None  # nothing before the first page
    while True:
        forward.append([row["id"] for row in page["items"]])
        if page["next_cursor"] is None:
            break
        page = client.get(url, params={"sort": sort, "limit": 3,
                                       "cursor": page["next_cursor"]}).json()  # fmt: skip

    backward = [[row["id"] for row in page["items"]]]
    while page["prev_cursor"] is not None:
        page = client.get(url, params={"sort": sort, "limit": 3,
                                       "before": page["prev_cursor"]}).json()  # fmt: skip
        backward.append([row["id"] for row in page["items"]])
        assert page["next_cursor"] is not None  # the page just left is still after it

    assert backward[::-1] == forward and len(forward) == 3  # 8 trials, failures unscored
    both = client.get(url, params={"cursor": page["next_cursor"], "before": page["next_cursor"]})
    assert both.status_code == 422 and "not both" in both.text


@pytest.mark.parametrize("sort", ["newest", "oldest", "best", "worst"])
def test_paging_visits_each_trial_once_for_every_sort(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe, sort: str
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    numbers = [r["number"] for r in listing(client, search, sort=sort, limit=3)]

    assert sorted(numbers) == list(range(8))  # type: ignore[type-var]
    if sort == "newest":
        assert numbers == list(range(7, -1, -1))


def test_trials_added_between_pages_neither_repeat_nor_shift_rows(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    first = client.get(f"/api/searches/{search.id}/trials", params={"limit": 4}).json()
    base = session.query(Trial).filter_by(search_id=search.id, number=0).one()
    add_trial(session, search, agent="opt", parent=base, score=0.9)
    session.commit()

    second = client.get(
        f"/api/searches/{search.id}/trials", params={"limit": 4, "cursor": first["next_cursor"]}
    ).json()

    assert [r["number"] for r in first["items"]] == [7, 6, 5, 4]
    assert [r["number"] for r in second["items"]] == [3, 2, 1, 0]


@pytest.mark.parametrize(
    ("params", "numbers"),
    [
        ({"agent": "opt"}, [6, 3, 1]),
        ({"label": "crash"}, [3]),
        ({"label": "ok", "agent": "arch"}, [2]),
        ({"status": "running"}, [7]),
        ({"agent": "nobody"}, []),
    ],
)
def test_filters_narrow_the_listing_and_its_total(
    client: TestClient,
    session: Session,
    settings: Settings,
    recipe: Recipe,
    params: dict[str, str],
    numbers: list[int],
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    page = client.get(f"/api/searches/{search.id}/trials", params=params).json()

    assert [r["number"] for r in page["items"]] == numbers
    assert page["total"] == len(numbers)


def test_an_unknown_label_filter_is_a_422_naming_the_parameter(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    response = client.get(f"/api/searches/{search.id}/trials", params={"label": "meh"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "query.label"


@pytest.mark.parametrize("cursor", ["garbage!", "WzEsMiwzXQ", "bnVsbA"])
def test_a_forged_cursor_is_a_400(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe, cursor: str
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    response = client.get(f"/api/searches/{search.id}/trials", params={"cursor": cursor})

    assert response.status_code == 400
    assert response.json()["error"] == "InvalidCursor"


def test_one_trial_comes_whole_with_its_diff_and_log(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    base = session.query(Trial).filter_by(search_id=search.id, number=0).one()
    diff = "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-LR = 0.1\n+LR = 0.05\n"
    trial = add_trial(
        session, search, agent="opt", parent=base, score=0.8, hypothesis="lower lr", diff=diff
    )
    trial.log_tail = "epoch 1 loss 0.3\n"
    session.commit()

    body = client.get(f"/api/trials/{trial.id}").json()

    assert body["diff"] == diff
    assert body["hypothesis"] == "lower lr"
    assert body["agent"] == "opt"
    assert body["parent_id"] == base.id
    assert body["log_tail"] == "epoch 1 loss 0.3\n"
    assert body["metrics"] == {"val_acc": 0.8}
    summary = client.get(f"/api/searches/{search.id}/trials", params={"limit": 1}).json()
    assert "diff" not in summary["items"][0]


def test_a_missing_trial_is_a_404(client: TestClient) -> None:
    assert client.get("/api/trials/12345").status_code == 404
