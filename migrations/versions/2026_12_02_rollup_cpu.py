"""trial_rollup.cpu_s and cpu_trials: CPU time of settled trials, summed, and how many had it

Revision ID: 2026_12_02_rollup_cpu
Revises: 2026_12_02_trial_params
Create Date: 2026-12-02

Blocks stored before this count no CPU time (0 of 0 trials measured), which
is true of every trial that finished before CPU time was recorded.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_rollup_cpu"
down_revision: str | None = "2026_12_02_trial_params"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trial_rollup") as batch:
        batch.add_column(sa.Column("cpu_s", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cpu_trials", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("trial_rollup") as batch:
        batch.drop_column("cpu_trials")
        batch.drop_column("cpu_s")
