"""What every dashboard browser test stands on: our server on a free port, Debian's Chromium
through Playwright, a seeded search, and a guard that fails a page asking any other host.

Both window sizes a researcher uses (a desktop and a 390-px phone) are one
parameter, `viewport`, so a test of an item runs at both.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, sync_playwright
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app.config import Settings
from app.server import create_app
from app.store.models import Search, Trial
from testing.factories import LOWER_LR, Recipe, add_trial, seeded_search

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TOKEN = "dashboard-token"
DIFF = "diff --git a/train.py b/train.py\n" + LOWER_LR


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """Our app on a free loopback port, in a thread, for as long as the block runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
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
def server(settings: Settings) -> Iterator[str]:
    """With a token: writes from a page ask for it."""
    with serving(settings.model_copy(update={"api_token": SecretStr(TOKEN)})) as base:
        yield base


@pytest.fixture
def private_server(settings: Settings) -> Iterator[str]:
    """A private server: every page asks for a sign-in first."""
    private = settings.model_copy(update={"api_token": SecretStr(TOKEN), "private": True})
    with serving(private) as base:
        yield base


DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return dict(request.param)


@pytest.fixture(scope="session")
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


def search_trial(search: Search, number: int) -> int:
    """The id of the search's trial `number`."""
    session = object_session(search)
    assert session is not None
    found = session.scalar(
        select(Trial.id).where(Trial.search_id == search.id, Trial.number == number)
    )
    assert found is not None, number
    return found


def every_page(search: Search) -> list[str]:
    """Every page the dashboard serves by GET for a search (the cancel confirmation is a POST's
    answer and the sign-in page a private server's: their tests reach them by form)."""
    best, first = search.best_trial_id, search_trial(search, 1)
    return [
        "/", f"/searches/{search.id}", f"/searches/{search.id}/trials",
        f"/searches/{search.id}/params", f"/trials/{best}", f"/trials/{first}",
        f"/trials/{best}/compare", f"/trials/{best}/compare?against=baseline",
        "/compare", f"/compare?ids={search.id}", "/trials/999999",
    ]  # fmt: skip


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


def open_page(browser: Browser, server: str, viewport: dict[str, int]) -> tuple[Page, list[str]]:
    """A new page of that size, guarded: the list collects any request to another host."""
    page = browser.new_page(viewport=viewport)
    return page, guarded(page, server)


def shot(page: Page, name: str) -> None:
    """A full-page screenshot, named for the window it was taken in."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    suffix = "-phone" if size and size["width"] <= PHONE["width"] else ""
    page.screenshot(path=str(SHOTS / f"{name}{suffix}.png"), full_page=True)
