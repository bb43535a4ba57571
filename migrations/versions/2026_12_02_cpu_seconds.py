"""trial.cpu_s: the CPU time of a trial's training runs, counted by the kernel

Revision ID: 2026_12_02_cpu_seconds
Revises: 2026_12_02_confirm_seconds
Create Date: 2026-12-02

Trials run before this, or on a host that cannot count CPU time, have none (NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_cpu_seconds"
down_revision: str | None = "2026_12_02_confirm_seconds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("cpu_s", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("cpu_s")
