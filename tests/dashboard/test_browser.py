"""The dashboard in a real headless Chromium, each item of issue 18 on a desktop and a phone.

Invariant: the pages render their charts on the server (non-empty SVG); the
best trial is one click from the search; the lineage is a tree whose dots lead
to their trials and whose folds lead to the parent that holds them; a search
that is not getting anywhere says why; cancel asks first and re-run is offered
only where it can run; the trials table filters, sorts and pages both ways;
the params page ranks the knobs and charts any reported metric; compare picks
searches and draws them on one chart; a write needs the token when auth is on;
no page asks anything of any host but ours. Screenshots go to
`test-artifacts/screenshots/` (the desktop ones are the README's).
"""

from __future__ import annotations

import random

from playwright.sync_api import Browser
from sqlalchemy.orm import Session

from app.config import Settings
from app.dashboard.palette import contrast, mark_colour
from app.domain.importance import MIN_TRIALS
from app.domain.states import Label
from app.store.models import Search, Trial
from testing.factories import Recipe, add_trial, baseline_of, seeded_search
from tests.dashboard.conftest import PHONE, TOKEN, every_page, open_page, search_trial, shot


def test_audit_a_search_from_the_list_to_a_diff_and_pause_it_with_the_token(
    server: str, browser: Browser, search: Search, viewport: dict[str, int]
) -> None:
    page, outside = open_page(browser, server, viewport)

    page.goto(server + "/")
    assert page.locator("#searches tbody tr").count() == 1
    shot(page, "1-searches")

    page.click(f"text={search.name}")
    page.wait_for_url(f"**/searches/{search.id}")
    assert page.locator("#progress circle.point").count() > 0
    assert page.locator("#progress polyline.best").count() == 1
    fold = page.locator("#lineage a.fold")  # trials 3-6, discards under trial 1, in one mark
    assert fold.count() == 1 and fold.get_attribute("data-count") == "4"
    assert page.locator("#lineage a.node").count() + 4 == 9  # every trial: a dot or folded
    assert page.locator("#lineage path.edge.best").count() >= 1
    assert page.locator("#leaderboard tbody tr").count() == 3
    shot(page, "2-search")

    page.click("#best a")  # the best score is the best trial, one click away
    page.wait_for_url(f"**/trials/{search.best_trial_id}")
    assert page.locator("#hypothesis").inner_text() == "Halve the learning rate"
    assert page.locator("pre.diff .d-add").inner_text() == "+LR = 0.05"
    assert page.locator("pre.diff .d-del").inner_text() == "-LR = 0.1"
    shot(page, "3-trial")
    page.click("#from-baseline")  # the cumulated diff (its content: test_dashboard_pages)
    page.wait_for_url("**against=baseline")
    assert "compared with the baseline" in page.inner_text("main")

    page.goto(f"{server}/searches/{search.id}")
    page.locator("#lineage a.fold").click()  # the fold opens the parent, which lists them
    first = search_trial(search, 1)
    page.wait_for_url(f"**/trials/{first}#children")
    assert [n for n in ("3", "4", "5", "6") if f">{n}</a>" in page.inner_html("#children")] == [
        "3", "4", "5", "6"
    ]  # fmt: skip
    best_node = page.locator(f'#lineage a.node[data-trial="{search.best_trial_id}"]')
    page.go_back()
    best_node.click()
    page.wait_for_url(f"**/trials/{search.best_trial_id}")

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


def test_a_failing_agent_is_named_with_what_to_do_and_cancel_asks_first(
    server: str, browser: Browser, session: Session, settings: Settings, recipe: Recipe,
    viewport: dict[str, int],
) -> None:  # fmt: skip
    search = seeded_search(session, settings, recipe, "maximize")
    for _ in range(5):
        add_trial(session, search, agent="opt", parent=None, label=Label.INFRA_ERROR)
    session.commit()
    page, outside = open_page(browser, server, viewport)

    page.goto(f"{server}/searches/{search.id}")
    banner = page.locator("#warnings")
    assert banner.is_visible() and "opt" in banner.inner_text()
    assert "endpoint" in banner.inner_text()  # the cause, and what to do about it
    shot(page, "9-warning")

    page.fill("#actions input[name=token]", TOKEN)
    page.click("#actions button[value=cancel]")
    assert page.locator("h1").inner_text().startswith(f"Cancel search {search.id}")
    page.click("text=No, back to the search")
    assert page.locator("#status").inner_text() == "running"
    page.fill("#actions input[name=token]", TOKEN)
    page.click("#actions button[value=cancel]")
    page.fill("#confirm input[name=token]", TOKEN)
    page.click("#confirm button[type=submit]")
    page.wait_for_url(f"**/searches/{search.id}")
    assert page.locator("#status").inner_text() == "cancelled"

    page.goto(f"{server}/trials/{search_trial(search, 1)}")  # a finished search: no re-run
    assert page.locator("#rerun").count() == 0
    assert outside == []


def test_the_trials_table_sorts_from_its_headers_and_pages_both_ways(
    server: str, browser: Browser, session: Session, search: Search, viewport: dict[str, int]
) -> None:
    first = session.get(Trial, search_trial(search, 1))
    for _ in range(55):
        add_trial(session, search, agent="arch", parent=first, label=Label.OOM)
    session.commit()
    page, outside = open_page(browser, server, viewport)

    page.goto(f"{server}/searches/{search.id}/trials")
    assert "64 trials match" in page.inner_text("main")
    page.click("#trials thead >> text=Score")
    page.wait_for_url("**sort=best**")
    assert page.locator("#trials tbody tr").first.locator("td").nth(7).inner_text() == "0.8"
    opening = page.inner_text("#trials tbody")
    page.click("#next")
    assert page.inner_text("#trials tbody") != opening
    page.click("#prev")
    assert page.inner_text("#trials tbody") == opening  # the very page it came from
    assert page.locator("#prev").count() == 0
    assert outside == []


def test_the_params_page_ranks_the_knobs_and_charts_a_picked_metric(
    server: str, browser: Browser, session: Session, search: Search, viewport: dict[str, int]
) -> None:
    baseline, rng = baseline_of(session, search), random.Random(5)
    for _ in range(MIN_TRIALS):
        lr = round(rng.uniform(0.001, 0.2), 4)
        trial = add_trial(session, search, agent="knobs", parent=baseline,
                          score=1 - abs(lr - 0.05))  # fmt: skip
        trial.params = {"lr": lr}
        trial.metrics = {**trial.metrics, "steps_per_s": 50 + trial.number}
    session.commit()
    page, outside = open_page(browser, server, viewport)

    page.goto(f"{server}/searches/{search.id}/params")
    assert page.locator("#importances tbody tr").first.inner_text().startswith("lr")
    assert page.locator("svg#importance rect.share").count() == 1
    shot(page, "10-params")
    page.select_option("#metric", "steps_per_s")
    page.click("#metric-picker button")
    page.wait_for_url("**metric=steps_per_s")
    assert page.locator("#metrics h2").inner_text() == "steps_per_s over trials"
    dots = page.locator("svg#metric-chart a")
    assert dots.count() == MIN_TRIALS
    dots.last.click()
    page.wait_for_url("**/trials/*")
    assert outside == []


def test_compare_picks_searches_and_draws_them_on_one_chart(
    server: str, browser: Browser, session: Session, settings: Settings, recipe: Recipe,
    search: Search, viewport: dict[str, int],
) -> None:  # fmt: skip
    other = seeded_search(session, settings, recipe, "maximize")
    page, outside = open_page(browser, server, viewport)

    page.goto(f"{server}/compare")
    page.check(f"#picker input[value='{search.id}']")
    page.check(f"#picker input[value='{other.id}']")
    page.click("#picker button[type=submit]")
    page.wait_for_url("**/compare?ids=*")
    assert page.locator("svg#comparison-chart polyline.series").count() == 2
    assert page.locator("#comparison tbody tr").count() == 2
    assert outside == []


def test_the_api_docs_render_offline_and_take_the_token_once(
    server: str, browser: Browser, search: Search, session: Session, viewport: dict[str, int]
) -> None:
    """/docs was blank offline: Swagger UI came from a CDN. Its assets are ours now, and the
    bearer scheme is declared, so "Authorize" takes the token once for every call."""
    page, outside = open_page(browser, server, viewport)

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
    page, outside = open_page(browser, server, PHONE)

    for path in every_page(search):
        page.goto(server + path)
        sideways = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert sideways <= 1, (path, sideways)
        heights = page.eval_on_selector_all(
            "svg.chart text", "texts => texts.map(t => t.getBoundingClientRect().height)"
        )
        assert all(height >= 7 for height in heights if height), (path, min(heights))
    page.goto(f"{server}/searches/{search.id}")
    shot(page, "8-search-390px")
    assert page.get_by_label("API token").count() == 1  # the token input has a name
    skip = page.locator("a.skip")  # keyboard users pass the graph's dots in one step
    assert skip.count() == 1 and skip.get_attribute("href") == "#after-lineage"

    assert outside == []


def test_failure_marks_stand_out_from_the_chart() -> None:
    """Marks in the pale label colours had 1.5:1-2.1:1 contrast on white."""
    for label in Label:
        assert contrast(mark_colour(label.value), "#ffffff") >= 3.0, label


def test_a_running_searchs_pages_update_themselves_and_keep_what_the_reader_typed(
    server: str, browser: Browser, session: Session, search: Search, viewport: dict[str, int]
) -> None:
    """The trials table reloaded itself every 10 s (a meta refresh, which also threw away a
    half-filled filter); now both pages swap in fresh counts when the search moves."""
    page, outside = open_page(browser, server, viewport)
    page.goto(f"{server}/searches/{search.id}/trials")
    page.select_option("#filters select[name=label]", Label.OOM.value)  # not yet applied
    other, elsewhere = open_page(browser, server, viewport)
    other.goto(f"{server}/searches/{search.id}")
    other.fill("#actions input[name=token]", "typed")
    page.wait_for_timeout(1500)  # both streams have sent their first event

    add_trial(session, search, agent="opt", parent=None, label=Label.CRASH)
    session.commit()

    page.wait_for_function("document.querySelector('#count').innerText.startsWith('10 ')")
    other.wait_for_function("document.querySelector('#progress-count').innerText.startsWith('9 ')")
    assert page.input_value("#filters select[name=label]") == Label.OOM.value
    assert other.input_value("#actions input[name=token]") == "typed"
    assert outside == elsewhere == []
