"""trial.idea_hash, trial.notes, trial.tokens_cached; the transcript kept whole, compressed

Revision ID: 2026_12_02_ideas_transcripts
Revises: 2026_12_02_expected_delta
Create Date: 2026-12-02

The transcript moves from a JSON column (each message cut at 2,000 characters)
to `transcript_z`, zlib-compressed JSON holding every message in full. Stored
transcripts are carried over as they were (their cut messages stay cut).
"""

import json
import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_ideas_transcripts"
down_revision: str | None = "2026_12_02_expected_delta"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("idea_hash", sa.String(64)))
        batch.add_column(sa.Column("notes", sa.Text()))
        batch.add_column(
            sa.Column("tokens_cached", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("transcript_z", sa.LargeBinary()))
        batch.create_index("ix_trial_search_idea", ["search_id", "idea_hash"])
    _copy(op.get_bind(), "transcript", "transcript_z", _compress)
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("transcript")


def downgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("transcript", sa.JSON()))
    _copy(op.get_bind(), "transcript_z", "transcript", _decompress)
    with op.batch_alter_table("trial") as batch:
        batch.drop_index("ix_trial_search_idea")
        batch.drop_column("transcript_z")
        batch.drop_column("tokens_cached")
        batch.drop_column("notes")
        batch.drop_column("idea_hash")


def _compress(value: object) -> bytes:
    return zlib.compress(json.dumps(value).encode(), 6)


def _decompress(value: object) -> object:
    assert isinstance(value, bytes)
    return json.loads(zlib.decompress(value))


def _copy(connection: sa.Connection, source: str, target: str, convert: object) -> None:
    """Move one transcript column's values into the other, converted, in batches of rows."""
    assert callable(convert)
    trial = sa.table(
        "trial",
        sa.column("id", sa.Integer()),
        sa.column("transcript", sa.JSON()),
        sa.column("transcript_z", sa.LargeBinary()),
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(trial.c.id, trial.c[source])
            .where(trial.c.id > last, trial.c[source].is_not(None))
            .order_by(trial.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row_id, value in rows:
            connection.execute(
                sa.update(trial).where(trial.c.id == row_id).values({target: convert(value)})
            )
        last = rows[-1][0]
