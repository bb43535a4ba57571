"""initial schema: search, agent, trial, event

Revision ID: 2026_11_25_initial
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_25_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "search",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("repo_path", sa.Text(), nullable=False),
        sa.Column("base_commit", sa.String(64), nullable=False),
        sa.Column("best_trial_id", sa.Integer(), nullable=True),
        sa.Column("halt_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_search"),
        if_not_exists=True,
    )
    op.create_index("ix_search_status", "search", ["status"], if_not_exists=True)
    op.create_index("ix_search_created_at", "search", ["created_at"], if_not_exists=True)

    op.create_table(
        "agent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"], ["search.id"], name="fk_agent_search_id_search", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_agent"),
        sa.UniqueConstraint("search_id", "name", name="uq_agent_search_id"),
        if_not_exists=True,
    )

    op.create_table(
        "trial",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("hypothesis", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("label", sa.String(32), nullable=True),
        sa.Column("label_reason", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("wallclock_s", sa.Float(), nullable=True),
        sa.Column("artifact_bytes", sa.BigInteger(), nullable=True),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("image_digest", sa.String(128), nullable=True),
        sa.Column("isolated", sa.Boolean(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", UTC_TIME, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("queued_at", UTC_TIME, nullable=True),
        sa.Column("started_at", UTC_TIME, nullable=True),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["search_id"], ["search.id"], name="fk_trial_search_id_search", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["trial.id"], name="fk_trial_parent_id_trial", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agent.id"], name="fk_trial_agent_id_agent", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trial"),
        sa.UniqueConstraint("search_id", "number", name="uq_trial_search_id"),
        if_not_exists=True,
    )
    op.create_index("ix_trial_parent_id", "trial", ["parent_id"], if_not_exists=True)
    op.create_index("ix_trial_search_score", "trial", ["search_id", "score"], if_not_exists=True)
    op.create_index("ix_trial_search_agent", "trial", ["search_id", "agent_id"], if_not_exists=True)
    op.create_index("ix_trial_search_label", "trial", ["search_id", "label"], if_not_exists=True)
    op.create_index("ix_trial_search_status", "trial", ["search_id", "status"], if_not_exists=True)

    with op.batch_alter_table("search") as batch:
        batch.create_foreign_key(
            "fk_search_best_trial_id_trial",
            "trial",
            ["best_trial_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"], ["search.id"], name="fk_event_search_id_search", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trial.id"], name="fk_event_trial_id_trial", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_event"),
        if_not_exists=True,
    )
    op.create_index("ix_event_search_id_id", "event", ["search_id", "id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("event")
    with op.batch_alter_table("search") as batch:
        batch.drop_constraint("fk_search_best_trial_id_trial", type_="foreignkey")
    op.drop_table("trial")
    op.drop_table("agent")
    op.drop_table("search")
