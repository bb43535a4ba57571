"""trial_rollup: settled trial aggregates per block, agent, status and label;
search.rollup_blocks;
an index of each agent's trials by number

Revision ID: 2026_11_28_trial_rollup
Revises: 2026_11_28_edit_hash
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_28_trial_rollup"
down_revision: str | None = "2026_11_28_edit_hash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trial_rollup",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "search_id",
            sa.Integer(),
            sa.ForeignKey("search.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agent.id", ondelete="CASCADE")),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("label", sa.String(32)),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("best", sa.Float()),
        sa.Column("wins", sa.Integer(), nullable=False),
        sa.Column("best_delta", sa.Float()),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("wallclock_s", sa.Float(), nullable=False),
    )
    op.create_index("ix_trial_rollup_search_block", "trial_rollup", ["search_id", "block"])
    # An agent's latest proposals, for the scheduler's endpoint-failure streak.
    op.create_index("ix_trial_agent_number", "trial", ["agent_id", "number"])
    with op.batch_alter_table("search") as batch:
        # Searches from before this revision start at 0: their page sums the trials.
        batch.add_column(
            sa.Column("rollup_blocks", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("search") as batch:
        batch.drop_column("rollup_blocks")
    op.drop_index("ix_trial_agent_number", table_name="trial")
    op.drop_index("ix_trial_rollup_search_block", table_name="trial_rollup")
    op.drop_table("trial_rollup")
