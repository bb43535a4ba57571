"""trial.eval_s and trial_rollup.eval_s: seconds the evaluator ran, over every run;
trial.wallclock_s now sums every training run (every seed, the preflight too);
stored blocks are dropped and summed again by the next tick

Revision ID: 2026_12_01_eval_seconds
Revises: 2026_12_01_trial_sent_at
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_01_eval_seconds"
down_revision: str | None = "2026_12_01_trial_sent_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM trial_rollup")
    op.execute("UPDATE search SET rollup_blocks = 0")
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("eval_s", sa.Float()))
    with op.batch_alter_table("trial_rollup") as batch:
        batch.add_column(sa.Column("eval_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.execute("DELETE FROM trial_rollup")
    op.execute("UPDATE search SET rollup_blocks = 0")
    with op.batch_alter_table("trial_rollup") as batch:
        batch.drop_column("eval_s")
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("eval_s")
