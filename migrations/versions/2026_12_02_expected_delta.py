"""trial.expected_delta: the gain the proposing agent expected, beside the measured one

Revision ID: 2026_12_02_expected_delta
Revises: 2026_12_01_eval_seconds
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_expected_delta"
down_revision: str | None = "2026_12_01_eval_seconds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("expected_delta", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("expected_delta")
