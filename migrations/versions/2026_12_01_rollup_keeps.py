"""trial_rollup counts keeps (decision keep), not ok trials that beat their parent;
stored blocks are dropped and summed again by the next tick

Revision ID: 2026_12_01_rollup_keeps
Revises: 2026_11_28_trial_rollup
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_01_rollup_keeps"
down_revision: str | None = "2026_11_28_trial_rollup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _resum() -> None:
    """The stored sums mean something else now: drop them; every tick re-sums settled blocks."""
    op.execute("DELETE FROM trial_rollup")
    op.execute("UPDATE search SET rollup_blocks = 0")


def upgrade() -> None:
    _resum()
    with op.batch_alter_table("trial_rollup") as batch:
        batch.alter_column("wins", new_column_name="keeps", existing_type=sa.Integer())


def downgrade() -> None:
    _resum()
    with op.batch_alter_table("trial_rollup") as batch:
        batch.alter_column("keeps", new_column_name="wins", existing_type=sa.Integer())
