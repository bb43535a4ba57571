"""Alembic owns the schema: upgrade, downgrade and upgrade again on the backend under test.

Invariants: the migrated schema is exactly what the models declare; the app
refuses to serve a database its migrations have not reached, and says how to
fix it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

import app.store.models  # noqa: F401  (registers the tables on Base.metadata)
from app.config import Settings
from app.db import Base, current_revision, get_engine, head_revision, migrate
from app.errors import SchemaOutdated
from app.server import create_app
from app.store.models import Trial
from testing.databases import drop_postgres_database, make_postgres_database


@pytest.fixture
def fresh_url(server_database_url: str | None, tmp_path: Path) -> Iterator[str]:
    """An empty database of the backend under test, owned by this test alone."""
    if server_database_url is None:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url, name = make_postgres_database(server_database_url)
    yield url
    get_engine(url).dispose()
    drop_postgres_database(server_database_url, name)


def tables(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade_leaves_the_schema_the_models_declare(fresh_url: str) -> None:
    migrate(fresh_url)
    assert tables(fresh_url) == {"search", "agent", "trial", "trial_rollup", "event"}
    migrate(fresh_url, "base", down=True)
    assert tables(fresh_url) == set()
    migrate(fresh_url)

    assert current_revision(fresh_url) == head_revision()
    with get_engine(fresh_url).connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_the_api_refuses_an_unmigrated_database_and_names_the_fix(
    fresh_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=fresh_url, data_dir=tmp_path)

    with pytest.raises(SchemaOutdated, match="run `trialforge db upgrade`"):
        with TestClient(create_app(settings)):
            pass


def test_health_reports_an_outdated_schema_as_unavailable(fresh_url: str, tmp_path: Path) -> None:
    migrate(fresh_url)
    settings = Settings(database_url=fresh_url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        migrate(fresh_url, "base", down=True)

        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "schema outdated"


def test_stored_transcripts_survive_the_move_to_compressed_storage(fresh_url: str) -> None:
    """The transcript column became compressed JSON: what was stored reads back the same."""
    migrate(fresh_url, "2026_12_02_expected_delta")
    kept = [{"role": "system", "content": "You are opt, ..."}, {"role": "tool", "content": "ok"}]
    engine = get_engine(fresh_url)
    with engine.begin() as connection:
        search_id = connection.execute(
            text("INSERT INTO search (name, status, spec, repo_path, base_commit, "
                 "rollup_blocks, created_at, updated_at) VALUES ('s', 'running', '{}', '/r', "
                 "'abc', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id")
        ).scalar_one()  # fmt: skip
        connection.execute(
            text("INSERT INTO trial (search_id, number, hypothesis, diff, status, metrics, "
                 "log_tail, transcript, tokens_in, tokens_out, cost_usd, attempts, created_at) "
                 "VALUES (:s, 0, 'h', '', 'finished', '{}', '', :t, 0, 0, 0, 0, "
                 "CURRENT_TIMESTAMP)"),
            {"s": search_id, "t": json.dumps(kept)},
        )  # fmt: skip

    migrate(fresh_url)

    with Session(engine) as session:
        trial = session.scalars(select(Trial)).one()
        assert trial.transcript == kept and trial.tokens_cached == 0
    migrate(fresh_url, "2026_12_02_expected_delta", down=True)
    with engine.connect() as connection:
        back = connection.execute(text("SELECT transcript FROM trial")).scalar_one()
    assert (json.loads(back) if isinstance(back, str) else back) == kept
