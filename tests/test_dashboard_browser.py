"""The dashboard in a real headless Chromium: audit a search from list to diff, then pause it.

Invariant: the pages render their charts on the server (non-empty SVG), a
lineage node leads to its trial page with the diff, the trials table filters
by label on the server, a pause needs the token when auth is on, and no page
asks anything of any host but ours. A screenshot of each page is saved under
`test-artifacts/screenshots/`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, sync_playwright
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.dashboard.palette import contrast, mark_colour
from app.domain.states import Label
from app.server import create_app
from app.store.models import Search, Trial
from testing.factories import LOWER_LR, Recipe, add_trial, seeded_search

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TOKEN = "dashboard-token"
DIFF = "diff --git a/train.py b/train.py\n" + LOWER_LR


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secured = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    config = uvicorn.Config(create_app(secured), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def search(session: Session, settings: Settings, recipe: Recipe) -> Search:
    found = seeded_search(session, settings, recipe, "maximize")
    first_win = session.scalar(select(Trial).where(Trial.search_id == found.id, Trial.number == 1))
    best = add_trial(
        session, found, agent="opt", parent=first_win, score=0.8, diff=DIFF,
        hypothesis="Halve the learning rate",
    )  # fmt: skip
    found.best_trial_id = best.id
    for trial in session.scalars(select(Trial).where(Trial.search_id == found.id)):
        trial.params = {"lr": round(0.1 / (1 + trial.number), 4)}  # as recorded when proposed
    session.commit()
    return found


def guarded(page: Page, base: str) -> list[str]:
    """Abort and record every request to a host other than ours."""
    outside: list[str] = []
    ours = urlparse(base).netloc

    def route(route: Route) -> None:
        if urlparse(route.request.url).netloc == ours:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return outside


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_audit_a_search_from_the_list_to_a_diff_and_pause_it_with_the_token(
    server: str, browser: Browser, search: Search
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside = guarded(page, server)

    page.goto(server + "/")
    assert page.locator("#searches tbody tr").count() == 1
    shot(page, "1-searches")

    page.click(f"text={search.name}")
    page.wait_for_url(f"**/searches/{search.id}")
    assert page.locator("#progress circle.point").count() > 0
    assert page.locator("#progress polyline.best").count() == 1
    assert page.locator("#lineage a.node").count() >= 8
    assert page.locator("#lineage path.edge.best").count() >= 1
    assert page.locator("#leaderboard tbody tr").count() == 3
    shot(page, "2-search")

    best_node = page.locator(f'#lineage a.node[data-trial="{search.best_trial_id}"]')
    best_node.click()
    page.wait_for_url(f"**/trials/{search.best_trial_id}")
    assert page.locator("#hypothesis").inner_text() == "Halve the learning rate"
    assert page.locator("pre.diff .d-add").inner_text() == "+LR = 0.05"
    assert page.locator("pre.diff .d-del").inner_text() == "-LR = 0.1"
    shot(page, "3-trial")

    page.goto(f"{server}/searches/{search.id}/trials")
    page.select_option("#filters select[name=label]", Label.CRASH.value)
    page.click("#filters button[type=submit]")
    page.wait_for_url("**label=crash**")
    labels = page.locator("#trials tbody tr .label").all_inner_texts()
    assert labels == ["crash"]
    shot(page, "4-trials-filtered")

    page.goto(f"{server}/compare?ids={search.id}")
    assert page.locator("#comparison tbody tr").count() == 1
    assert page.locator("svg#progress circle.point").count() > 0
    shot(page, "5-compare")

    page.goto(f"{server}/searches/{search.id}/params")
    assert page.locator("svg#parallel polyline.param-line").count() == 6  # the scored ones
    shot(page, "5b-params")

    page.goto(f"{server}/searches/{search.id}")
    page.click("#actions button[value=pause]")  # without the token: the form refuses
    assert page.locator("#status").inner_text() == "running"
    page.fill("#actions input[name=token]", "wrong")
    page.click("#actions button[value=pause]")
    assert "API token" in page.content()
    page.goto(f"{server}/searches/{search.id}")
    page.fill("#actions input[name=token]", TOKEN)
    page.click("#actions button[value=pause]")
    page.wait_for_url(f"**/searches/{search.id}")
    assert page.locator("#status").inner_text() == "paused"
    shot(page, "6-paused")

    assert outside == []


def test_the_api_docs_render_offline_and_take_the_token_once(
    server: str, browser: Browser, search: Search, session: Session
) -> None:
    """/docs was blank offline: Swagger UI came from a CDN. Its assets are ours now, and the
    bearer scheme is declared, so "Authorize" takes the token once for every call."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside = guarded(page, server)

    page.goto(server + "/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock").count() >= 10
    assert page.locator("button.authorize").count() == 1
    page.click("button.authorize")
    page.fill(".auth-container input", TOKEN)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".btn-done")
    pause = page.locator(".opblock-post", has_text="/api/searches/{search_id}/{action}").first
    pause.locator(".opblock-summary").click()
    pause.locator("button.try-out__btn").click()
    pause.locator("input[placeholder=search_id]").fill(str(search.id))
    pause.locator("tr[data-param-name=action] select").select_option("pause")
    pause.locator("button.execute").click()
    status = pause.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    session.refresh(search)
    assert search.status == "paused"  # the call went through, with the token entered once
    shot(page, "7-api-docs")

    assert outside == []


def test_every_page_fits_a_phone_and_keeps_its_chart_text_legible(
    server: str, browser: Browser, search: Search
) -> None:
    """At 390 px the whole page scrolled sideways and chart text shrank to about 3 px."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    outside = guarded(page, server)
    paths = ["/", f"/searches/{search.id}", f"/searches/{search.id}/trials",
             f"/trials/{search.best_trial_id}", f"/compare?ids={search.id}"]  # fmt: skip

    for path in paths:
        page.goto(server + path)
        sideways = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert sideways <= 1, (path, sideways)
        heights = page.eval_on_selector_all(
            "svg.chart text", "texts => texts.map(t => t.getBoundingClientRect().height)"
        )
        assert all(height >= 7 for height in heights if height), (path, min(heights))
    shot(page, "8-search-390px")
    page.goto(f"{server}/searches/{search.id}")
    assert page.get_by_label("API token").count() == 1  # the token input has a name
    skip = page.locator("a.skip")  # keyboard users pass the graph's dots in one step
    assert skip.count() == 1 and skip.get_attribute("href") == "#after-lineage"

    assert outside == []


def test_failure_marks_stand_out_from_the_chart() -> None:
    """Marks in the pale label colours had 1.5:1-2.1:1 contrast on white."""
    for label in Label:
        assert contrast(mark_colour(label.value), "#ffffff") >= 3.0, label
