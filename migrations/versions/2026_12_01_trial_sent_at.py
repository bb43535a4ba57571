"""trial.sent_at: when a trial's latest task message (propose or run) was sent

The sweep re-sends a message no worker has claimed after a while (a broker
that restarted empty loses what it held); a proposal's worker and lease now
use trial.worker and trial.heartbeat_at as a run's do.

Revision ID: 2026_12_01_trial_sent_at
Revises: 2026_12_01_rollup_keeps
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_01_trial_sent_at"
down_revision: str | None = "2026_12_01_rollup_keeps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("trial") as batch:
        batch.drop_column("sent_at")
