"""workers: one heartbeat row per running worker process

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("queues", sa.String(100), nullable=False),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", ts, nullable=False),
        sa.Column("last_seen", ts, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_workers_last_seen", "workers", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_workers_last_seen", table_name="workers")
    op.drop_table("workers")
