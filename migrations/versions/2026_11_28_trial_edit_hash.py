"""trial: edit_hash, delta, transcript, evaluator_digest, decision; search: evaluator_digest,
noise_sd; the rollup index

Revision ID: 2026_11_28_edit_hash
Revises: 2026_11_25_initial
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_28_edit_hash"
down_revision: str | None = "2026_11_25_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every per-search aggregate of the dashboard reads only this index.
ROLLUP = [
    "search_id",
    "number",
    "status",
    "label",
    "agent_id",
    "score",
    "delta",
    "cost_usd",
    "wallclock_s",
    "tokens_in",
    "tokens_out",
]


def upgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("edit_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("delta", sa.Float(), nullable=True))
        batch.add_column(sa.Column("transcript", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("evaluator_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("decision", sa.String(24), nullable=True))
    with op.batch_alter_table("search") as batch:
        batch.add_column(sa.Column("evaluator_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("noise_sd", sa.Float(), nullable=True))
    op.create_index("ix_trial_search_edit", "trial", ["search_id", "edit_hash"], if_not_exists=True)
    op.create_index("ix_trial_rollup", "trial", ROLLUP, if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_trial_rollup", table_name="trial", if_exists=True)
    op.drop_index("ix_trial_search_edit", table_name="trial", if_exists=True)
    with op.batch_alter_table("search") as batch:
        batch.drop_column("noise_sd")
        batch.drop_column("evaluator_digest")
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("decision")
        batch.drop_column("evaluator_digest")
        batch.drop_column("transcript")
        batch.drop_column("delta")
        batch.drop_column("edit_hash")
