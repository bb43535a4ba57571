"""Alembic environment: migrations run on the connection `app.db.migrate` hands in.

Revisions never import app models (a model change must not rewrite history);
batch mode lets the same revisions alter tables on SQLite.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
