"""Every dashboard page passes axe-core's checks on a desktop and a phone (issue 18 #10).

Invariant: no page has a serious or critical axe violation (contrast, names of
controls and links, landmarks, document language, ...): axe-core 4 runs in
the page itself, from the copy `axe-playwright-python` ships, so the check
needs no network. A violation is reported with the rule, its help text and
the elements, so a failure says what to fix. `/docs` and `/redoc` are Swagger
UI's and ReDoc's own pages, served as they ship (axe finds their method
badges' contrast and their nested controls wanting): they are not checked.
"""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session

from app.domain.states import Label
from app.store.models import Search
from testing.factories import add_trial
from tests.dashboard.conftest import TOKEN, every_page, open_page

BLOCKING = ("serious", "critical")
AXE = Axe()


def blocking(page: Page) -> list[str]:
    """The page's serious and critical violations, one line each with where they are."""
    found = AXE.run(page).response["violations"]
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + ", ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
        for violation in found
        if violation["impact"] in BLOCKING
    ]


def test_every_page_passes_axe(
    server: str, browser: Browser, search: Search, session: Session, viewport: dict[str, int]
) -> None:
    for _ in range(5):  # a failing agent: the search page shows its banner too
        add_trial(session, search, agent="arch", parent=None, label=Label.INFRA_ERROR)
    session.commit()
    page, outside = open_page(browser, server, viewport)

    problems = {}
    for path in every_page(search):
        page.goto(server + path)
        problems[path] = blocking(page)
    page.goto(f"{server}/searches/{search.id}")
    page.fill("#actions input[name=token]", TOKEN)
    page.click("#actions button[value=cancel]")  # the confirmation page
    problems["cancel?"] = blocking(page)

    failing = {path: found for path, found in problems.items() if found}
    assert not failing, "\n".join(
        f"{path}: {line}" for path, found in failing.items() for line in found
    )
    assert outside == []


def test_the_sign_in_page_passes_axe(
    private_server: str, browser: Browser, viewport: dict[str, int]
) -> None:
    page, outside = open_page(browser, private_server, viewport)

    page.goto(private_server + "/searches/1")
    page.wait_for_url("**/login**")
    before = blocking(page)
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")  # the page again, saying the token was wrong

    assert before == [] and blocking(page) == []
    assert outside == []
