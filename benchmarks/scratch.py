"""A migrated scratch store for a benchmark, gone when it ends.

SQLite in a temporary directory, or with a Postgres server URL a fresh
database on that server (dropped afterwards); the directory is the
benchmark's data root either way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.db import migrate
from testing.databases import drop_postgres_database, make_postgres_database


@contextmanager
def scratch_store(server_url: str | None) -> Iterator[tuple[str, Path]]:
    """(database url, scratch directory)."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if server_url:
            url, name = make_postgres_database(server_url)
        else:
            url, name = f"sqlite:///{root / 'bench.db'}", ""
        try:
            migrate(url)
            yield url, root
        finally:
            if server_url:
                drop_postgres_database(server_url, name)
