"""trial.params: the declared knobs' values in each trial's recipe

Revision ID: 2026_12_02_trial_params
Revises: 2026_12_02_cpu_seconds
Create Date: 2026-12-02

Trials recorded before this have none (NULL); new ones get them when proposed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_trial_params"
down_revision: str | None = "2026_12_02_cpu_seconds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("params", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("params")
