"""Shared fixtures: a real, migrated database and an API client over it.

The database is SQLite by default; with TRIALFORGE_TEST_DATABASE_URL set to a
Postgres server, the session creates a fresh database there (dropped at the
end), so the suite never touches data it does not own. Each test starts from
empty tables. A missing Postgres is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from docker.errors import DockerException, ImageNotFound
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import get_engine, migrate, session_scope
from app.server import create_app
from sandbox.image import DEFAULT_TAG, build_offline
from testing import factories
from testing.databases import drop_postgres_database, make_postgres_database

TABLES = ("event", "trial_rollup", "trial", "agent", "search")


@pytest.fixture(scope="session")
def server_database_url() -> str | None:
    """The Postgres server under test, or None for SQLite."""
    return os.environ.get("TRIALFORGE_TEST_DATABASE_URL") or None


@pytest.fixture(scope="session")
def empty_database(
    server_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A factory-fresh database URL, created for this test session and dropped after it."""
    if server_database_url is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'trialforge.db'}"
        return
    url, name = make_postgres_database(server_database_url)
    yield url
    get_engine(url).dispose()
    drop_postgres_database(server_database_url, name)


@pytest.fixture(scope="session")
def migrated_database(empty_database: str) -> str:
    migrate(empty_database)
    return empty_database


@pytest.fixture
def database_url(migrated_database: str) -> Iterator[str]:
    """The migrated database, emptied after the test so the next one owns its data."""
    yield migrated_database
    with get_engine(migrated_database).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            connection.execute(text("UPDATE search SET best_trial_id = NULL"))
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        api_token=None,
        llm_base_url=factories.NO_MODEL,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    """A unit of work for arranging data directly; committed when the test's block ends."""
    with session_scope(database_url) as unit:
        yield unit


@pytest.fixture
def recipe(tmp_path: Path) -> factories.Recipe:
    return factories.make_recipe(tmp_path)


# Docker: without a daemon the Docker tests skip on a developer machine but FAIL
# in CI (`CI=true`), so a broken engine can never turn a suite green by
# skipping it. `.ci/docker.sh` starts the engine and builds the image.


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except (DockerException, requests.exceptions.RequestException) as error:
        reason = f"Docker daemon unreachable ({error}); run .ci/docker.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield client
    client.close()


GVISOR = "runsc"


@pytest.fixture(scope="session")
def gvisor_runtime(docker_client: docker.DockerClient) -> str:
    """gVisor's runtime, registered with the daemon (.ci/docker.sh does it)."""
    if GVISOR not in docker_client.info().get("Runtimes", {}):
        reason = f"the Docker daemon has no {GVISOR} runtime; run .ci/docker.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return GVISOR


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    """The sandbox image tag, built offline (about 40 s) when it is missing."""
    try:
        docker_client.images.get(DEFAULT_TAG)
    except ImageNotFound:
        build_offline(DEFAULT_TAG)
    return DEFAULT_TAG
