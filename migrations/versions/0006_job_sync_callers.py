"""jobs.sync_callers: how many synchronous callers wait on a job, across API processes

A hang-up cancels a synchronous job only when no caller waits on it in any API process: an
SDK's retry may reach another process than the call it repeats.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("sync_callers", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("sync_callers")
