"""Creating a search does its slow work before any database write (issue 14, item 10).

A recipe fetch may take up to TRIALFORGE_GIT_FETCH_TIMEOUT_S, and hashing the
held-out data takes as long as the data is large. Invariants: both happen in
a staging folder before the one short unit of work that records the search,
so a git remote that never answers blocks no other write (on SQLite, whose
write lock is the whole database's); a failure at any point, the unit of
work rolling back after the import included, leaves no repository and no
staging folder behind.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.server import create_app
from app.services.import_recipe import create_search
from app.store.models import Search
from testing.factories import Recipe, spec_dict
from testing.listener import Listener

CONNECT_WAIT_S = 30  # for git to reach the silent remote: a bound, not a pause


def test_a_silent_git_remote_blocks_no_other_write_while_a_search_waits_on_it(
    settings: Settings, recipe: Recipe
) -> None:
    patient = settings.model_copy(update={"git_fetch_timeout_s": 120.0})
    answers: dict[str, httpx.Response] = {}
    with TestClient(create_app(patient)) as client:
        with Listener().running() as silent:

            def submit_to_the_silent_remote() -> None:
                spec = spec_dict(recipe, name="silent", repo=f"{silent.url}/recipe.git")
                answers["silent"] = client.post("/api/searches", json=spec)

            waiting = threading.Thread(target=submit_to_the_silent_remote)
            waiting.start()
            assert silent.connected.wait(CONNECT_WAIT_S), "git never reached the remote"

            meanwhile = client.post("/api/searches", json=spec_dict(recipe, name="meanwhile"))
            paused = client.post(f"/api/searches/{meanwhile.json()['id']}/pause")
            still_waiting = waiting.is_alive()
        # Leaving the listener hangs up on git, which then gives up at once.
        waiting.join(CONNECT_WAIT_S)

    assert (meanwhile.status_code, paused.status_code) == (201, 200)
    assert still_waiting, "the other writes waited for the silent remote"
    refused = answers["silent"]
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "repo"
    with session_scope(settings.resolved_database_url) as session:
        kept = [
            (search.name, Path(search.repo_path).name) for search in session.scalars(select(Search))
        ]
    assert [name for name, _ in kept] == ["meanwhile"]
    assert [path.name for path in settings.repos_dir.iterdir()] == [kept[0][1]]  # no staging left


def test_a_search_whose_unit_of_work_rolls_back_leaves_no_repository(
    settings: Settings, recipe: Recipe
) -> None:
    url = settings.resolved_database_url

    with pytest.raises(RuntimeError, match="the caller failed after the search was made"):
        with session_scope(url) as session:
            created = create_search(
                session, parse_spec(spec_dict(recipe)), settings=settings, actor="test"
            )
            assert Path(created.search.repo_path).is_dir()
            raise RuntimeError("the caller failed after the search was made")

    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(Search)) == 0
    assert list(settings.repos_dir.iterdir()) == []


def test_a_committed_search_keeps_its_repository_when_the_session_goes_on(
    settings: Settings, recipe: Recipe
) -> None:
    url = settings.resolved_database_url

    with session_scope(url) as session:
        created = create_search(
            session, parse_spec(spec_dict(recipe)), settings=settings, actor="test"
        )
        session.commit()
        session.rollback()  # a later unit of work on the same session goes wrong

    assert Path(created.search.repo_path).is_dir()
