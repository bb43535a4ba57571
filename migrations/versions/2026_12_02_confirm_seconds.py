"""trial.confirm_s and trial_rollup.confirm_s: what confirming nominees on fresh seeds took

Revision ID: 2026_12_02_confirm_seconds
Revises: 2026_12_02_ideas_transcripts
Create Date: 2026-12-02

Trials finished before this have no record of it: 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_confirm_seconds"
down_revision: str | None = "2026_12_02_ideas_transcripts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("trial", "trial_rollup")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("confirm_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("confirm_s")
