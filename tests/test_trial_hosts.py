"""Trials run on the hosts that consume their search's queue, and only there.

Each trial host's workers consume one queue (`trials`, shared, or the host's
own); a search's `budgets.trial.queue` says where its trials go. Two "hosts"
here are two trial workers on different queues, with the local runner.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import SearchStatus
from app.services.import_recipe import create_search
from app.store.models import Search, Trial
from testing.loop_harness import CONTROL_ONLY, deployment, loop_spec, make_loop_recipe


def test_a_search_runs_only_on_the_host_that_consumes_its_queue(
    database_url: str, tmp_path: Path
) -> None:
    repo, evaluator = make_loop_recipe(tmp_path)
    with deployment(database_url, tmp_path / "data", sandbox_backend="local") as running:
        search_ids = {}
        for host in ("host-a", "host-b"):
            raw = loop_spec(repo, evaluator, CONTROL_ONLY, max_trials=3, max_concurrent=1)
            raw["budgets"]["trial"]["queue"] = host
            with session_scope(database_url) as session:
                settings = Settings(database_url=database_url, data_dir=tmp_path / "data")
                created = create_search(session, parse_spec(raw), settings=settings, actor="t")
                search_ids[host] = created.search.id

        def finished(host: str) -> bool:
            with session_scope(database_url) as session:
                search = session.get(Search, search_ids[host])
                return search is not None and search.status == SearchStatus.FINISHED

        def workers(host: str) -> set[str | None]:
            with session_scope(database_url) as session:
                query = select(Trial.worker).where(
                    Trial.search_id == search_ids[host], Trial.started_at.is_not(None)
                )
                return set(session.scalars(query))

        running.start("scheduler", "--interval=1")
        running.start("worker", "--queues=propose", "--concurrency=1")
        running.start("worker", "--queues=host-b", "--concurrency=1")
        running.wait_for(lambda: finished("host-b"), 120, "host-b's search finished")
        assert workers("host-a") == set()  # nobody consumes host-a yet: nothing of it ran

        running.start("worker", "--queues=host-a", "--concurrency=1")
        running.wait_for(lambda: finished("host-a"), 120, "host-a's search finished")

    assert workers("host-a") and workers("host-b")
    assert workers("host-a").isdisjoint(workers("host-b"))
