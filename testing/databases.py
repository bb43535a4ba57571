"""Scratch databases on a Postgres server: created beside the one a URL names, dropped after.

Tests and benchmarks own the databases they write to; nothing here touches
an existing database's data.
"""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import normalize_database_url


def make_postgres_database(server_url: str) -> tuple[str, str]:
    """Create an empty database beside the one `server_url` names; returns (url, name)."""
    name = f"trialforge_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_database_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(normalize_database_url(server_url)).set(database=name)
    return url.render_as_string(hide_password=False), name


def drop_postgres_database(server_url: str, name: str) -> None:
    admin = create_engine(normalize_database_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
