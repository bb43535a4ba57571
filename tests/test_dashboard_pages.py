"""Dashboard pages over HTTP: complete without JavaScript, honest errors, live progress.

Invariants: every page renders server-side from the store (charts as SVG
markup), refers to nothing outside this server, and a bad request gets an
HTML error page with the reason; a re-run queues the same commit as a new
trial; the live stream reports progress and ends with the search.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.spec import parse_spec
from app.domain.states import Label, SearchStatus, TrialStatus
from app.services.import_recipe import create_search
from app.store.models import Search, Trial
from testing.factories import (
    LOWER_LR,
    Recipe,
    add_trial,
    baseline_of,
    finish,
    give_commit,
    seeded_search,
    spec_dict,
)

EXTERNAL = re.compile(r"""(?:src|href)=["'](?:https?:)?//""")


def test_every_page_renders_its_data_and_nothing_from_elsewhere(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    crash = session.scalar(select(Trial).where(Trial.label == "crash"))
    assert crash is not None

    pages = {
        "/": [search.name, "7 / 8"],
        f"/searches/{search.id}": ['id="progress"', 'id="lineage"', 'id="leaderboard"', "opt"],
        f"/searches/{search.id}/trials?label=crash&agent=&status=": ["1 trial match"],
        f"/trials/{crash.id}": ["crash", "compare with parent"],
        f"/trials/{crash.id}/compare": ['id="compare"'],
    }
    for path, expected in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        for text in expected:
            assert text in response.text, (path, text)
        assert not EXTERNAL.search(response.text), path


def test_every_page_serves_the_context_it_renders_as_json(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    crash = session.scalar(select(Trial).where(Trial.label == "crash"))
    assert crash is not None
    paths = [
        "/",
        f"/searches/{search.id}",
        f"/searches/{search.id}/trials?label=crash",
        f"/trials/{crash.id}",
        f"/trials/{crash.id}/compare",
        f"/compare?ids={search.id}",
    ]

    pages = {}
    for path in paths:
        response = client.get(path + ("&" if "?" in path else "?") + "format=json")
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"] == "application/json"
        assert "<svg" not in response.text, path  # the drawing is left out; its data is in
        pages[path] = response.json()

    listed = pages["/"]["rows"][0]
    assert (listed["search"]["name"], listed["stats"]["trials_total"]) == (search.name, 8)
    view = pages[f"/searches/{search.id}"]["view"]
    assert view["labels"] == {"crash": 1, "ok": 5, "oom": 1}
    assert {row["agent"]: row["trials"] for row in view["leaderboard"]}["opt"] == 3
    assert sum(bucket["count"] for bucket in view["buckets"]) == 7
    assert len(view["nodes"]) == 8
    table = pages[f"/searches/{search.id}/trials?label=crash"]
    assert [row["id"] for row in table["page"]["items"]] == [crash.id]
    detail = pages[f"/trials/{crash.id}"]
    assert (detail["view"]["trial"]["label"], detail["view"]["parent"]["score"]) == ("crash", 0.7)


def test_a_bad_request_gets_an_html_page_with_the_reason(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")

    missing = client.get("/searches/999")
    bad_label = client.get(f"/searches/{search.id}/trials?label=exploded")

    assert missing.status_code == 404 and "no search 999" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert bad_label.status_code == 422 and "exploded" in bad_label.text
    assert "is not one of: ok, patch_rejected" in bad_label.text


def test_a_rerun_queues_the_same_commit_as_a_new_trial_beside_the_original(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 0))
    assert baseline is not None

    response = client.post(f"/api/trials/{baseline.id}/rerun")

    assert response.status_code == 201
    copy = response.json()
    assert copy["status"] == TrialStatus.READY
    assert copy["commit_sha"] == baseline.commit_sha
    assert copy["number"] == 8
    assert copy["hypothesis"].startswith("re-run of trial 0")


def test_a_trial_of_a_finished_search_cannot_be_rerun(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    search.status = SearchStatus.FINISHED
    session.commit()
    baseline = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 0))
    assert baseline is not None

    response = client.post(f"/api/trials/{baseline.id}/rerun")

    assert response.status_code == 409
    assert "its search is finished" in response.json()["detail"]


def test_the_live_stream_reports_progress_and_ends_with_the_search(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    stored = session.get(Search, search.id)
    assert stored is not None
    stored.status = SearchStatus.FINISHED
    session.commit()

    with client.stream("GET", f"/searches/{search.id}/live") as response:
        body = "".join(response.iter_text())

    assert response.headers["content-type"].startswith("text/event-stream")
    assert body.startswith("event: progress\ndata: ")
    assert '"status": "finished"' in body and '"finished": 7' in body


def test_the_search_page_follows_trials_as_they_finish(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    crashes = '<span class="label label-crash">crash</span> {}</a>'
    assert crashes.format(1) in client.get(f"/searches/{search.id}").text
    running = session.scalar(select(Trial).where(Trial.status == TrialStatus.RUNNING))
    assert running is not None

    running.status, running.label = TrialStatus.FINISHED, "crash"
    session.commit()
    later = add_trial(session, search, agent="opt", parent=None, label=None,
                      status=TrialStatus.RUNNING)  # fmt: skip
    session.commit()
    first = client.get(f"/searches/{search.id}").text
    later.status, later.label = TrialStatus.FINISHED, "crash"
    session.commit()
    second = client.get(f"/searches/{search.id}").text

    assert crashes.format(2) in first
    assert crashes.format(3) in second


def test_the_search_page_lists_the_keeps_agents_read_best_first_with_positive_gains(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    """The dashboard reads the same top-kept view as the prompt: decisions, not `ok`
    labels, and gains by the metric's direction (a minimize search's are positive)."""
    raw = spec_dict(recipe)
    raw["evaluator"]["direction"] = "minimize"
    search = create_search(session, parse_spec(raw), settings=settings, actor="test").search
    baseline = finish(session, baseline_of(session, search), Label.OK, 0.50)
    first = add_trial(session, search, agent="opt", parent=baseline, score=0.40)
    add_trial(session, search, agent="arch", parent=first, score=0.45)  # worse: discarded
    second = add_trial(session, search, agent="arch", parent=first, score=0.30)
    session.commit()

    page = client.get(f"/searches/{search.id}").text
    table = page.split('<table class="grid" tabindex="0" id="kept">')[1].split("</table>")[0]
    rows = re.findall(r'<a href="/trials/(\d+)">(\d+)</a></td><td>(\w+)</td><td>([\d.]+)</td>'
                      r"<td>([+-][\d.]+)</td>", table)  # fmt: skip

    assert rows == [(str(second.id), "3", "arch", "0.3", "+0.2"),
                    (str(first.id), "1", "opt", "0.4", "+0.1")]  # fmt: skip


def test_the_best_is_one_click_away_and_a_cancel_asks_first(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    best = f'<a href="/trials/{search.best_trial_id}">0.7</a>'

    assert best in client.get(f"/searches/{search.id}").text
    assert best in client.get("/").text
    asked = client.post(f"/searches/{search.id}/cancel", follow_redirects=False)
    assert asked.status_code == 200 and "1 unfinished trial will be cancelled" in asked.text
    assert client.get(f"/api/searches/{search.id}").json()["status"] == "running"
    done = client.post(f"/searches/{search.id}/cancel", data={"confirm": "yes"},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert client.get(f"/api/searches/{search.id}").json()["status"] == "cancelled"


def test_a_rerun_is_offered_only_for_a_trial_that_ran_in_a_search_still_going(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    ran = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 1))
    assert ran is not None
    ran.commit_sha = "a" * 40
    twin = add_trial(session, search, agent="opt", parent=ran, label=Label.DUPLICATE)
    twin.commit_sha = "a" * 40
    session.commit()

    assert 'id="rerun"' in client.get(f"/trials/{ran.id}").text
    assert 'id="rerun"' not in client.get(f"/trials/{twin.id}").text  # it never ran
    refused = client.post(f"/trials/{twin.id}/rerun")
    assert refused.status_code == 409 and "<title>Not possible now" in refused.text
    search.status = SearchStatus.FINISHED
    session.commit()
    assert 'id="rerun"' not in client.get(f"/trials/{ran.id}").text


def test_a_trial_page_says_why_no_edit_came_and_shows_metrics_as_numbers(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 0))
    rejected = add_trial(session, search, agent="opt", parent=baseline,
                         label=Label.PATCH_REJECTED)  # fmt: skip
    rejected.label_reason = "no usable reply in 3 attempts; last: the reply holds no JSON object"
    rejected.transcript = [{"role": "assistant", "content": "I would lower the learning rate."}]
    scored = add_trial(session, search, agent="opt", parent=baseline, score=0.912345678)
    scored.metrics = {"val_acc": 0.912345678, "per_class": {"3": 0.876543219}, "ok": True}
    session.commit()

    page = client.get(f"/trials/{rejected.id}").text
    metrics = client.get(f"/trials/{scored.id}").text

    assert "No edit came of this proposal: no usable reply in 3 attempts" in page
    assert "What the agent replied is in its session below." in page
    assert "I would lower the learning rate." in page
    assert "<td>0.912346</td>" in metrics
    assert "<td>{&#34;3&#34;: 0.876543}</td>" in metrics and "<td>true</td>" in metrics


def test_any_trial_shows_everything_its_line_changed_since_the_baseline(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    raw = spec_dict(recipe)
    raw["evaluator"]["direction"] = "minimize"
    search = create_search(session, parse_spec(raw), settings=settings, actor="test").search
    baseline = finish(session, baseline_of(session, search), Label.OK, 0.50)
    first = add_trial(session, search, agent="opt", parent=baseline, label=None,
                      status=TrialStatus.READY)  # fmt: skip
    give_commit(session, search, first)  # LR 0.1 -> 0.05
    finish(session, first, Label.OK, 0.40)
    second = add_trial(session, search, agent="opt", parent=first, label=None,
                       status=TrialStatus.READY)  # fmt: skip
    give_commit(session, search, second, LOWER_LR.replace("LR = 0.1", "LR = 0.05")
                .replace("+LR = 0.05", "+LR = 0.02"))  # fmt: skip
    finish(session, second, Label.OK, 0.30)
    session.commit()

    own = client.get(f"/trials/{second.id}/compare").text
    cumulated = client.get(f"/trials/{second.id}/compare?against=baseline").text

    assert "-LR = 0.05" in own and "-LR = 0.1" not in own
    assert "-LR = 0.1" in cumulated and "+LR = 0.02" in cumulated and "+LR = 0.05" not in cumulated
    assert "compared with the baseline" in cumulated and "(+0.2)" in cumulated  # lower is better
    assert 'id="from-baseline"' in client.get(f"/trials/{second.id}").text


def test_the_trials_table_shows_parent_decision_and_deltas_and_sorts_from_its_headers(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    first = session.scalar(select(Trial).where(Trial.search_id == search.id, Trial.number == 1))
    assert first is not None

    page = client.get(f"/searches/{search.id}/trials?sort=oldest").text
    row = page.split(f'<a href="/trials/{first.id}">1</a>')[1].split("</tr>")[0]

    assert 'src="/static/live.js"' in page and "http-equiv" not in page  # live, not a timer
    assert ">0</a></td>" in row and "<td>keep</td>" in row and "<td>+0.2</td>" in row
    assert '<a href="?sort=best" title="sort by score' in page
    assert '<a href="?sort=newest" title="sort by number">#</a>' in page
    assert 'id="first"' not in page
    for _ in range(50):  # past one page
        add_trial(session, search, agent="opt", parent=first, label=Label.CRASH)
    session.commit()
    opening = client.get(f"/searches/{search.id}/trials?sort=oldest").text
    cursor = opening.split('id="next" href="?sort=oldest&amp;cursor=')[1].split('"')[0]
    later = client.get(f"/searches/{search.id}/trials?sort=oldest&cursor={cursor}").text
    assert '<a id="first" href="?sort=oldest">' in later
    before = later.split('id="prev" href="?sort=oldest&amp;before=')[1].split('"')[0]
    back = client.get(f"/searches/{search.id}/trials?sort=oldest&before={before}").text
    assert back.split("<tbody>")[1] == opening.split("<tbody>")[1]  # the page it came from
    assert 'id="prev"' not in back and "58 trials match" in back


def test_compare_picks_searches_on_the_page_and_draws_them_on_one_chart(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    first = seeded_search(session, settings, recipe, "maximize")
    second = seeded_search(session, settings, recipe, "maximize")

    picker = client.get("/compare").text
    both = client.get(f"/compare?ids={first.id}&ids={second.id}").text

    assert f'<input type="checkbox" name="ids" value="{first.id}" >' in picker
    assert 'id="comparison-chart"' not in picker
    assert f'value="{first.id}" checked' in both and f'value="{second.id}" checked' in both
    chart = both.split('id="comparison-chart"')[1].split("</svg>")[0]
    assert chart.count('<polyline class="series"') == 2
    assert f"{first.id} · {first.name}</text>" in chart
    assert client.get(f"/compare?ids={first.id},{second.id}").text.count('class="series"') == 2
