"""trial (search_id, status, number) index in place of (search_id, status)

Revision ID: 2026_12_02_status_number
Revises: 2026_12_02_rollup_cpu
Create Date: 2026-12-02

Every tick asks for the lowest unfinished trial number; with the number in
the status index it is a lookup among the few unfinished trials, where
SQLite otherwise walked the search's trials in number order (5.6 ms per
tick at 30,000 trials, growing with the search). The longer index serves
every query the shorter one did.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2026_12_02_status_number"
down_revision: str | None = "2026_12_02_rollup_cpu"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_trial_search_status_number", "trial", ["search_id", "status", "number"])
    op.drop_index("ix_trial_search_status", table_name="trial")


def downgrade() -> None:
    op.create_index("ix_trial_search_status", "trial", ["search_id", "status"])
    op.drop_index("ix_trial_search_status_number", table_name="trial")
